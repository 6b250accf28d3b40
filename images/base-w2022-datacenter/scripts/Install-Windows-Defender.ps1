# Makes sure Microsoft Defender is installed and its signatures current.
# Idempotent: the feature is added only when missing; signatures are updated
# only when older than a day. Offline fallback: with DEFENDER_DEFINITIONS_SHARE
# set (an internal UNC share), definitions come from there.
$ErrorActionPreference = 'Stop'

$feature = Get-WindowsFeature -Name Windows-Defender
if (-not $feature.Installed) {
    Write-Output 'Installing Windows Defender'
    Install-WindowsFeature -Name Windows-Defender | Out-Null
} else {
    Write-Output 'Windows Defender already installed'
}

$status = Get-MpComputerStatus
if ($status.AntivirusSignatureAge -lt 1) {
    Write-Output "Signatures are current ($($status.AntivirusSignatureVersion))"
    exit 0
}

if ($env:DEFENDER_DEFINITIONS_SHARE) {
    Write-Output 'Updating signatures from the internal share'
    Set-MpPreference -SignatureDefinitionUpdateFileSharesSources $env:DEFENDER_DEFINITIONS_SHARE
    Update-MpSignature -UpdateSource FileShares
} else {
    Write-Output 'Updating signatures from Microsoft Update'
    Update-MpSignature -UpdateSource MicrosoftUpdateServer
}
Write-Output "Signatures now $((Get-MpComputerStatus).AntivirusSignatureVersion)"
