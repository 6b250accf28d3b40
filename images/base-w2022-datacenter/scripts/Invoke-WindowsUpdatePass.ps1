# One Windows Update pass of the build, bounded in count and time, with
# reboot loops detected and named. The template runs it as passes 1 to 4, each
# followed by a restart when the pass leaves the restart-needed marker, then
# once more as the final check (WU_PASS=final).
#
# A pass: checks the limits first (total time, a pending reboot that survived
# the restarts), does nothing once the passes converged or beyond
# WU_MAX_PASSES, restarts again while a reboot is pending, and otherwise
# searches, downloads and installs what is applicable, records each result
# and asks for a restart when Windows needs one. The final check fails the
# build when updates are still applicable or a reboot is still pending.
#
# Failures say what they saw and start with a stable kind the factory's
# diagnosis can match:
#   [image-factory:windows-update-reboot-loop]     the same update failed again after a restart,
#                                                   or a reboot stays pending across restarts
#   [image-factory:windows-update-not-converged]   updates still applicable after the last pass
#   [image-factory:windows-update-reboot-pending]  a reboot pending after the last pass
#   [image-factory:windows-update-timeout]         all passes together over their time limit
#
# State between passes: C:\ProgramData\image-factory\windows-update\state.json
# (removed with the folder before generalisation). Environment: WU_PASS (1-4
# or final), WU_MAX_PASSES, WU_TIMEOUT_MINUTES, WU_MAX_FAILURES_PER_UPDATE,
# WU_MAX_PENDING_REBOOTS, WU_SEARCH_CRITERIA. Runs as SYSTEM: the Windows
# Update Agent refuses to install from a remote session.
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $env:ProgramData 'image-factory\ImageFactory.psm1')

# Defender definition updates change several times a day and would keep the
# passes from converging; the Defender step updates the signatures instead.
$definitionUpdates = 'e0789628-ce08-4437-be74-2495b842f43b'

function Get-Limit([string]$Name) {
    $text = [Environment]::GetEnvironmentVariable($Name)
    $value = 0
    if (-not [int]::TryParse($text, [ref]$value) -or $value -lt 1) {
        throw "[image-factory:windows-update-config] $Name must be a whole number of at least 1, not '$text'"
    }
    return $value
}

$pass = $env:WU_PASS
if ($pass -ne 'final' -and $pass -notmatch '^[1-9]$') {
    throw "[image-factory:windows-update-config] WU_PASS must be a pass number or 'final', not '$pass'"
}
$maxPasses = Get-Limit 'WU_MAX_PASSES'
$timeoutMinutes = Get-Limit 'WU_TIMEOUT_MINUTES'
$maxFailures = Get-Limit 'WU_MAX_FAILURES_PER_UPDATE'
$maxPendingReboots = Get-Limit 'WU_MAX_PENDING_REBOOTS'
$criteria = if ($env:WU_SEARCH_CRITERIA) { $env:WU_SEARCH_CRITERIA } else { "IsInstalled=0 and IsHidden=0 and Type='Software' and BrowseOnly=0" }

$folder = Join-Path $env:ProgramData 'image-factory\windows-update'
$statePath = Join-Path $folder 'state.json'
$marker = Join-Path $folder 'restart-needed'
if (-not (Test-Path -Path $folder)) {
    New-Item -ItemType Directory -Path $folder | Out-Null
}
# The marker belongs to the previous pass, whose restart has happened.
if (Test-Path -Path $marker) {
    Remove-Item -Path $marker -Force
}

$now = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()
if (Test-Path -Path $statePath) {
    $state = Get-Content -Path $statePath -Raw | ConvertFrom-Json
} else {
    $state = [pscustomobject]@{
        startedAtUnix       = $now
        converged           = $false
        convergedInPass     = $null
        pendingAfterRestart = 0
        passes              = @()
        failures            = @()
    }
}

function Save-State {
    Write-JsonFile -Path $statePath -Value $state
}

function Stop-Build([string]$Kind, [string]$Message) {
    Save-State
    Write-Output "[image-factory:$Kind] $Message"
    exit 1
}

function Get-Label($Update) {
    $kb = @($Update.KBArticleIDs) | Select-Object -First 1
    if ($kb) { return "KB$kb $($Update.Title)" }
    return $Update.Title
}

# Applicable updates, without Defender definition updates.
function Find-Update {
    $session = New-Object -ComObject Microsoft.Update.Session
    $session.ClientApplicationID = 'image-factory'
    $result = $session.CreateUpdateSearcher().Search($criteria)
    $found = New-Object System.Collections.Generic.List[object]
    foreach ($update in $result.Updates) {
        $isDefinition = @($update.Categories | Where-Object { $_.CategoryID -eq $definitionUpdates }).Count -gt 0
        if (-not $isDefinition) {
            $found.Add($update)
        }
    }
    Write-Output -NoEnumerate $found.ToArray()
}

# --- Limits, checked before anything changes --------------------------------

$elapsedMinutes = [math]::Floor(($now - [long]$state.startedAtUnix) / 60)
if (-not $state.converged -and $elapsedMinutes -gt $timeoutMinutes) {
    Stop-Build 'windows-update-timeout' ("Windows Update has run for {0} minutes over {1} pass(es), over its limit of {2} minutes (windows_update_timeout_minutes)" -f $elapsedMinutes, @($state.passes).Count, $timeoutMinutes)
}

$pending = Get-PendingRebootReason
$previous = @($state.passes) | Select-Object -Last 1
if ($null -ne $previous -and $previous.restartRequested) {
    # The previous pass restarted the VM: a reboot still pending survived it.
    if ($pending.Count -gt 0) {
        $state.pendingAfterRestart = [int]$state.pendingAfterRestart + 1
    } else {
        $state.pendingAfterRestart = 0
    }
}
if ([int]$state.pendingAfterRestart -ge $maxPendingReboots) {
    Stop-Build 'windows-update-reboot-loop' ("reboot loop: a reboot is still pending after {0} restart(s) in a row ({1}); windows_update_max_pending_reboots is {2}" -f $state.pendingAfterRestart, ($pending -join ', '), $maxPendingReboots)
}

# --- The final check ------------------------------------------------------------

if ($pass -eq 'final') {
    if ($state.converged) {
        Save-State
        Write-Output ("Windows Update converged in pass {0} after {1} minutes" -f $state.convergedInPass, $elapsedMinutes)
        exit 0
    }
    if ($pending.Count -gt 0) {
        Stop-Build 'windows-update-reboot-pending' ("a reboot is still pending after the last Windows Update pass ({0})" -f ($pending -join ', '))
    }
    $remaining = Find-Update
    if ($remaining.Count -gt 0) {
        $names = @($remaining | ForEach-Object { Get-Label $_ })
        Stop-Build 'windows-update-not-converged' ("{0} update(s) still applicable after {1} pass(es) (windows_update_max_passes): {2}" -f $remaining.Count, $maxPasses, ($names -join '; '))
    }
    $state.converged = $true
    $state.convergedInPass = 'final'
    Save-State
    Write-Output ("Windows Update converged after {0} pass(es) and {1} minutes" -f @($state.passes).Count, $elapsedMinutes)
    exit 0
}

# --- A pass -----------------------------------------------------------------------

$number = [int]$pass
if ($state.converged) {
    Write-Output "pass ${number}: nothing to do, Windows Update converged in pass $($state.convergedInPass)"
    exit 0
}
if ($number -gt $maxPasses) {
    Write-Output "pass ${number}: skipped, windows_update_max_passes is $maxPasses"
    exit 0
}

$record = [pscustomobject]@{
    pass                 = $number
    startedAtUnix        = $now
    endedAtUnix          = $null
    rebootPendingAtStart = @($pending)
    installed            = @()
    restartRequested     = $false
}

if ($pending.Count -gt 0) {
    # Install nothing on top of a pending reboot: restart first.
    Write-Output ("pass {0}: a reboot is pending ({1}); restarting before installing" -f $number, ($pending -join ', '))
    $record.restartRequested = $true
} else {
    $updates = Find-Update
    if ($updates.Count -eq 0) {
        $state.converged = $true
        $state.convergedInPass = $number
        Write-Output "pass ${number}: no applicable update, no reboot pending: converged"
    } else {
        $batch = New-Object -ComObject Microsoft.Update.UpdateColl
        foreach ($update in $updates) {
            if (-not $update.EulaAccepted) {
                $update.AcceptEula()
            }
            [void]$batch.Add($update)
            Write-Output "pass ${number}: will install $(Get-Label $update)"
        }
        $session = New-Object -ComObject Microsoft.Update.Session
        $session.ClientApplicationID = 'image-factory'
        $downloader = $session.CreateUpdateDownloader()
        $downloader.Updates = $batch
        [void]$downloader.Download()
        $installer = $session.CreateUpdateInstaller()
        $installer.Updates = $batch
        $result = $installer.Install()

        $installed = New-Object System.Collections.Generic.List[object]
        $failedNow = New-Object System.Collections.Generic.List[object]
        for ($i = 0; $i -lt $batch.Count; $i++) {
            $update = $batch.Item($i)
            $outcome = $result.GetUpdateResult($i)
            $entry = [pscustomobject]@{
                id         = $update.Identity.UpdateID
                title      = $update.Title
                kb         = Get-KbNumber (Get-Label $update)
                resultCode = [int]$outcome.ResultCode
                hresult    = '0x{0:X8}' -f $outcome.HResult
                pass       = $number
            }
            $installed.Add($entry)
            Write-Output ("pass {0}: {1} -> result {2} ({3})" -f $number, (Get-Label $update), $entry.resultCode, $entry.hresult)
            # 2 = succeeded, 3 = succeeded with errors; 4 failed, 5 aborted.
            if ($entry.resultCode -ne 2 -and $entry.resultCode -ne 3) {
                $failedNow.Add($entry)
            }
        }
        $record.installed = $installed.ToArray()
        $state.failures = @($state.failures) + $failedNow.ToArray()
        $record.restartRequested = [bool]$result.RebootRequired -or ((Get-PendingRebootReason).Count -gt 0)

        foreach ($failure in $failedNow) {
            $same = @($state.failures | Where-Object { $_.id -eq $failure.id })
            if ($same.Count -ge $maxFailures) {
                $record.endedAtUnix = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()
                $state.passes = @($state.passes) + $record
                Stop-Build 'windows-update-reboot-loop' ("reboot loop: {0} failed {1} times, in passes {2} (last result {3}, {4}); windows_update_max_failures_per_update is {5}" -f $failure.title, $same.Count, (($same | ForEach-Object { $_.pass }) -join ', '), $failure.resultCode, $failure.hresult, $maxFailures)
            }
        }
    }
}

$record.endedAtUnix = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()
$state.passes = @($state.passes) + $record
Save-State
if ($record.restartRequested) {
    New-Item -ItemType File -Path $marker -Force | Out-Null
    Write-Output "pass ${number}: restart requested"
}
exit 0
