# Adds the French (fr-FR) language pack. Idempotent: does nothing when the
# language is already installed. Offline fallback: with LANGUAGE_PACK_URL set
# (a blob holding the CAB), the package is fetched from there instead of
# Windows Update.
$ErrorActionPreference = 'Stop'
$language = 'fr-FR'

$installed = Get-WindowsPackage -Online | Where-Object { $_.PackageName -like "*LanguagePack*$language*" -and $_.PackageState -eq 'Installed' }
if ($installed) {
    Write-Output "Language pack $language already installed"
    exit 0
}

if ($env:LANGUAGE_PACK_URL) {
    $cab = Join-Path $env:TEMP "lp-$language.cab"
    if (-not (Test-Path $cab)) {
        Write-Output "Downloading the $language language pack from the configured blob"
        Invoke-WebRequest -Uri $env:LANGUAGE_PACK_URL -OutFile $cab -UseBasicParsing
    }
    Add-WindowsPackage -Online -PackagePath $cab -NoRestart | Out-Null
    Remove-Item $cab -Force
} else {
    Write-Output "Installing the $language language pack from Windows Update"
    Install-Language -Language $language -ErrorAction Stop | Out-Null
}
Write-Output "Language pack $language installed"
