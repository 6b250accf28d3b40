# Checks a VM made from the image against what the image declares (the
# [declare] table of its image.toml): Windows features installed, language
# packs installed, Defender on with signatures no older than a number of
# hours, firewall profiles on, services running. The test stage runs it on
# the test VM through Run Command; it changes nothing.
#
# Prints one JSON object on one line:
#   {"checks":[{"name":"feature:Web-Server","expected":"Installed","actual":"Installed","ok":true}, ...]}
# and exits 1 when any check fails, 0 otherwise. A check that cannot be read
# fails with "error: ..." as its actual value; it never stops the others.
# An actual value is cut to 200 characters. The factory asks for at most
# eight checks a Run Command, whose output Azure cuts to its last 4,096
# bytes.
#
# Each list parameter takes names, or one comma-separated string (Run Command
# passes every parameter as a string):
#   -Features Web-Server -LanguagePacks fr-FR -DefenderSignatureMaxAgeHours 24
#   -FirewallProfiles 'Domain,Private,Public' -Services 'W3SVC,WinDefend,mpssvc'
# A parameter left out is not checked (-DefenderSignatureMaxAgeHours -1: no
# Defender check).
param(
    [string[]]$Features = @(),
    [string[]]$LanguagePacks = @(),
    [double]$DefenderSignatureMaxAgeHours = -1,
    [string[]]$FirewallProfiles = @(),
    [string[]]$Services = @()
)
$ErrorActionPreference = 'Stop'
$invariant = [Globalization.CultureInfo]::InvariantCulture

function Split-List([string[]]$Values) {
    $names = New-Object System.Collections.Generic.List[string]
    foreach ($value in $Values) {
        foreach ($part in ($value -split ',')) {
            if ($part.Trim()) { $names.Add($part.Trim()) }
        }
    }
    Write-Output -NoEnumerate $names.ToArray()
}

$checks = New-Object System.Collections.Generic.List[object]

# Runs one check: $Measure yields the actual value and whether it is ok.
function Add-Check([string]$Name, [string]$Expected, [scriptblock]$Measure) {
    try {
        $actual, $ok = & $Measure
    } catch {
        $actual = "error: $($_.Exception.Message)"
        $ok = $false
    }
    # Run Command returns only the last 4,096 bytes of the output: no
    # value may make the line too long to arrive whole.
    $actual = [string]$actual
    if ($actual.Length -gt 200) { $actual = $actual.Substring(0, 200) + '...' }
    $script:checks.Add([ordered]@{ name = $Name; expected = $Expected; actual = [string]$actual; ok = [bool]$ok })
}

foreach ($feature in (Split-List $Features)) {
    Add-Check "feature:$feature" 'Installed' {
        $found = Get-WindowsFeature -Name $feature
        if ($null -eq $found) { 'not a Windows feature'; $false } else { [string]$found.InstallState; [bool]$found.Installed }
    }
}

foreach ($language in (Split-List $LanguagePacks)) {
    Add-Check "language-pack:$language" 'installed' {
        $installed = @((Get-CimInstance -ClassName Win32_OperatingSystem).MUILanguages)
        if ($installed -contains $language) { 'installed'; $true } else { "not installed (installed: $($installed -join ', '))"; $false }
    }
}

if ($DefenderSignatureMaxAgeHours -ge 0) {
    Add-Check 'defender:antivirus-enabled' 'True' {
        $status = Get-MpComputerStatus
        [string][bool]$status.AntivirusEnabled; [bool]$status.AntivirusEnabled
    }
    $limit = $DefenderSignatureMaxAgeHours.ToString($invariant)
    Add-Check 'defender:signature-age-hours' "<= $limit" {
        $status = Get-MpComputerStatus
        $updated = $status.AntivirusSignatureLastUpdated
        if ($null -eq $updated) {
            'signatures never updated'; $false
        } else {
            $age = ((Get-Date) - $updated).TotalHours
            $text = [string]::Format($invariant, '{0:0.0} (signatures {1}, updated {2:yyyy-MM-ddTHH:mm:ssZ})', $age, $status.AntivirusSignatureVersion, $updated.ToUniversalTime())
            $text; ($age -le $DefenderSignatureMaxAgeHours)
        }
    }
}

foreach ($profileName in (Split-List $FirewallProfiles)) {
    Add-Check "firewall:$profileName" 'True' {
        $firewall = Get-NetFirewallProfile -Name $profileName
        [string]$firewall.Enabled; ([string]$firewall.Enabled -eq 'True')
    }
}

foreach ($serviceName in (Split-List $Services)) {
    Add-Check "service:$serviceName" 'Running' {
        $service = Get-Service -Name $serviceName -ErrorAction SilentlyContinue
        if ($null -eq $service) { 'not installed'; $false } else { [string]$service.Status; ($service.Status -eq 'Running') }
    }
}

$failed = @($checks | Where-Object { -not $_.ok })
Write-Output (ConvertTo-Json -InputObject ([ordered]@{ checks = $checks.ToArray() }) -Depth 4 -Compress)
if ($failed.Count -gt 0) {
    exit 1
}
exit 0
