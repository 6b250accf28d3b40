# Writes image-evidence.json (schema image-factory.evidence/1): what the image
# says about its own patch level, read inside the build VM after the last
# Windows Update pass and restart, just before generalisation. The factory
# downloads the file and checks its OS build against Microsoft's security
# update data (docs/windows-image.md shows a sample).
#
# Each source is read on its own. One that cannot be read becomes an explicit
# null and an entry of "unavailable" (source and error), never a missing key;
# the file is written whole to a temporary name and then put in place, so it
# is valid JSON or absent, never half-written.
#
# Environment: EVIDENCE_PATH (where to write, default
# C:\ProgramData\image-factory\image-evidence.json); IMAGE_NAME,
# IMAGE_VERSION, FACTORY_RUN_ID (copied into "image"; empty: null).
# Runs as SYSTEM: the Windows Update history is read through the
# Microsoft.Update.Session COM object.
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $env:ProgramData 'image-factory\ImageFactory.psm1')

$path = if ($env:EVIDENCE_PATH) { $env:EVIDENCE_PATH } else { Join-Path $env:ProgramData 'image-factory\image-evidence.json' }
$unavailable = New-Object System.Collections.Generic.List[object]

# Runs one source's reader; on any error records it and yields $null.
function Read-Source {
    param([string]$Name, [scriptblock]$Read)
    try {
        Write-Output -NoEnumerate (& $Read)
    } catch {
        $script:unavailable.Add([ordered]@{ source = $Name; error = $_.Exception.Message })
        Write-Output $null
    }
}

function Get-Optional([string]$Value) {
    if ([string]::IsNullOrWhiteSpace($Value)) { return $null }
    return $Value
}

function Get-Count($Items) {
    if ($null -eq $Items) { return 'unknown' }
    return $Items.Count
}

# The OS, from the registry as it is after the last restart.
$os = [ordered]@{
    productName      = $null
    editionId        = $null
    installationType = $null
    displayVersion   = $null
    build            = $null
    lastBootAt       = $null
}
$currentVersion = Read-Source 'os' { Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion' }
if ($null -ne $currentVersion) {
    $os.productName = $currentVersion.ProductName
    $os.editionId = $currentVersion.EditionID
    $os.installationType = $currentVersion.InstallationType
    $os.displayVersion = $currentVersion.DisplayVersion
    if ($null -ne $currentVersion.CurrentBuild -and $null -ne $currentVersion.UBR) {
        $os.build = '10.0.{0}.{1}' -f $currentVersion.CurrentBuild, $currentVersion.UBR
    } else {
        $unavailable.Add([ordered]@{ source = 'os.build'; error = 'CurrentBuild or UBR is missing from the registry' })
    }
}
$operatingSystem = Read-Source 'os.lastBootAt' { Get-CimInstance -ClassName Win32_OperatingSystem }
if ($null -ne $operatingSystem) {
    $os.lastBootAt = ConvertTo-UtcText $operatingSystem.LastBootUpTime
}

# The usual pending-reboot markers; rebootPending is null when unreadable.
$reasons = Read-Source 'rebootPending' { Get-PendingRebootReason }
$rebootPending = if ($null -eq $reasons) { $null } else { $reasons.Count -gt 0 }

# Installed hotfixes (Get-HotFix), sorted, without duplicates.
$hotfixes = Read-Source 'hotfixes' {
    Write-Output -NoEnumerate @(Get-HotFix | ForEach-Object { $_.HotFixID } | Where-Object { $_ } | Sort-Object -Unique)
}

# The Windows Update history, newest first; resultCode 2 = succeeded.
$updates = Read-Source 'updates' {
    $session = New-Object -ComObject Microsoft.Update.Session
    $searcher = $session.CreateUpdateSearcher()
    $count = $searcher.GetTotalHistoryCount()
    $entries = New-Object System.Collections.Generic.List[object]
    if ($count -gt 0) {
        foreach ($entry in $searcher.QueryHistory(0, $count)) {
            if ([string]::IsNullOrWhiteSpace($entry.Title)) { continue }
            $entries.Add([ordered]@{
                    title      = $entry.Title
                    kb         = Get-KbNumber $entry.Title
                    resultCode = [int]$entry.ResultCode
                    operation  = [int]$entry.Operation
                    date       = ConvertTo-UtcText $entry.Date -AssumeUtc
                })
        }
    }
    Write-Output -NoEnumerate $entries.ToArray()
}

# For auditors: Defender's signatures, the installed roles and features, the
# installed UI languages (language packs).
$defender = Read-Source 'defender' {
    $status = Get-MpComputerStatus
    $updated = $status.AntivirusSignatureLastUpdated
    [ordered]@{
        antivirusEnabled     = [bool]$status.AntivirusEnabled
        signatureVersion     = $status.AntivirusSignatureVersion
        signatureLastUpdated = ConvertTo-UtcText $updated
        signatureAgeHours    = if ($updated) { [math]::Round(((Get-Date) - $updated).TotalHours, 1) } else { $null }
        engineVersion        = $status.AMEngineVersion
        platformVersion      = $status.AMProductVersion
    }
}
$features = Read-Source 'features' {
    Write-Output -NoEnumerate @(Get-WindowsFeature | Where-Object { $_.Installed } | ForEach-Object { $_.Name } | Sort-Object)
}
$languagePacks = if ($null -eq $operatingSystem) {
    $unavailable.Add([ordered]@{ source = 'languagePacks'; error = 'Win32_OperatingSystem could not be read' })
    $null
} else {
    Write-Output -NoEnumerate @($operatingSystem.MUILanguages | Sort-Object)
}

# Lists stay lists in the JSON, even of one entry; an unreadable one stays null.
if ($null -ne $reasons) { $reasons = @($reasons) }
if ($null -ne $hotfixes) { $hotfixes = @($hotfixes) }
if ($null -ne $updates) { $updates = @($updates) }
if ($null -ne $features) { $features = @($features) }
if ($null -ne $languagePacks) { $languagePacks = @($languagePacks) }

$evidence = [ordered]@{
    schema               = 'image-factory.evidence/1'
    collectedAt          = ConvertTo-UtcText (Get-Date)
    image                = [ordered]@{
        name    = Get-Optional $env:IMAGE_NAME
        version = Get-Optional $env:IMAGE_VERSION
        runId   = Get-Optional $env:FACTORY_RUN_ID
    }
    os                   = $os
    rebootPending        = $rebootPending
    rebootPendingReasons = $reasons
    hotfixes             = $hotfixes
    updates              = $updates
    defender             = $defender
    features             = $features
    languagePacks        = $languagePacks
    unavailable          = $unavailable.ToArray()
}

Write-JsonFile -Path $path -Value $evidence
Write-Output ("image-evidence written to {0}: build {1}, reboot pending {2}, {3} hotfixes, {4} history entries, {5} source(s) unavailable" -f `
        $path, $os.build, $rebootPending, (Get-Count $hotfixes), (Get-Count $updates), $unavailable.Count)
