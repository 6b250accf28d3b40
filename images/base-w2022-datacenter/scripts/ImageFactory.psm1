# Helpers the build's own scripts share (the Windows Update passes and the
# patch evidence). The template uploads this module to
# C:\ProgramData\image-factory before the first script that imports it; the
# generalisation removes the folder. Reads only, except Write-JsonFile, which
# writes the one file it is given.
$ErrorActionPreference = 'Stop'

# The usual pending-reboot markers, by the name the build reports them with.
$script:PendingRebootKeys = [ordered]@{
    'Component Based Servicing\RebootPending'     = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
    'WindowsUpdate\Auto Update\RebootRequired'    = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
}
$script:SessionManager = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager'

function Get-PendingRebootReason {
    <#
    .SYNOPSIS
    The pending-reboot markers that are set now (none: no reboot pending).
    #>
    $reasons = New-Object System.Collections.Generic.List[string]
    foreach ($name in $script:PendingRebootKeys.Keys) {
        if (Test-Path -Path $script:PendingRebootKeys[$name]) {
            $reasons.Add($name)
        }
    }
    $session = Get-ItemProperty -Path $script:SessionManager
    if ($session.PSObject.Properties['PendingFileRenameOperations'] -and $session.PendingFileRenameOperations) {
        $reasons.Add('Session Manager\PendingFileRenameOperations')
    }
    Write-Output -NoEnumerate $reasons.ToArray()
}

function ConvertTo-UtcText {
    <#
    .SYNOPSIS
    A date as RFC 3339 UTC text (2026-02-11T03:12:09Z); $null stays $null.
    #>
    param([Nullable[datetime]]$Date, [switch]$AssumeUtc)
    if ($null -eq $Date) {
        return $null
    }
    $utc = if ($AssumeUtc) { [datetime]::SpecifyKind($Date.Value, [DateTimeKind]::Utc) } else { $Date.Value.ToUniversalTime() }
    return $utc.ToString('yyyy-MM-ddTHH:mm:ssZ', [Globalization.CultureInfo]::InvariantCulture)
}

function Get-KbNumber {
    <#
    .SYNOPSIS
    The first KB number ("KB5075906") in a Windows Update title, or $null.
    #>
    param([string]$Text)
    if ($Text -match '\bKB(\d{6,8})\b') {
        return 'KB' + $Matches[1]
    }
    return $null
}

function Write-JsonFile {
    <#
    .SYNOPSIS
    Writes a value as JSON (UTF-8, no BOM) to a temporary name beside Path and
    then puts it in Path's place in one step, so a reader sees the old file or
    the whole new one, never half of it.
    #>
    param([Parameter(Mandatory)][string]$Path, [Parameter(Mandatory)]$Value)
    $folder = Split-Path -Path $Path -Parent
    if (-not (Test-Path -Path $folder)) {
        New-Item -ItemType Directory -Path $folder | Out-Null
    }
    $json = ConvertTo-Json -InputObject $Value -Depth 8
    $temporary = "$Path.$PID.tmp"
    [System.IO.File]::WriteAllText($temporary, $json, (New-Object System.Text.UTF8Encoding($false)))
    if (Test-Path -Path $Path) {
        [System.IO.File]::Replace($temporary, $Path, [NullString]::Value)
    } else {
        [System.IO.File]::Move($temporary, $Path)
    }
}

Export-ModuleMember -Function Get-PendingRebootReason, ConvertTo-UtcText, Get-KbNumber, Write-JsonFile
