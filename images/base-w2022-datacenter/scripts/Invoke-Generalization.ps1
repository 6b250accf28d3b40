# Generalises the build VM once, with a deadline on every wait, and fails
# with what it saw.
#
# 1. Waits for the Azure guest agent (the RdAgent and WindowsAzureGuestAgent
#    services running), as Microsoft's guidance for Windows images asks before
#    Sysprep, until GUEST_AGENT_TIMEOUT_MINUTES (default 15).
# 2. Removes the build's own folder (FACTORY_DIR: the Windows Update state,
#    the evidence already downloaded, the helper module).
# 3. Starts Sysprep (/oobe /generalize /quiet /quit /mode:vm) and polls the
#    image state until IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE, until
#    SYSPREP_TIMEOUT_MINUTES (default 30). Sysprep ending without that state
#    fails at once; so does the deadline. Both failures name the last state,
#    every state seen, and the end of Sysprep's setuperr.log.
#
# Idempotent: an image that is already generalized is left as it is.
# Failures start with a stable kind the factory's diagnosis can match:
# [image-factory:guest-agent-not-ready], [image-factory:sysprep-failed],
# [image-factory:sysprep-timeout].
$ErrorActionPreference = 'Stop'

function Get-Minutes([string]$Name, [int]$Default) {
    $text = [Environment]::GetEnvironmentVariable($Name)
    if ([string]::IsNullOrWhiteSpace($text)) { return $Default }
    $value = 0
    if (-not [int]::TryParse($text, [ref]$value) -or $value -lt 1) {
        throw "$Name must be a whole number of minutes of at least 1, not '$text'"
    }
    return $value
}

$agentMinutes = Get-Minutes 'GUEST_AGENT_TIMEOUT_MINUTES' 15
$sysprepMinutes = Get-Minutes 'SYSPREP_TIMEOUT_MINUTES' 30
$factoryDir = if ($env:FACTORY_DIR) { $env:FACTORY_DIR } else { Join-Path $env:ProgramData 'image-factory' }
$setupState = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State'
$generalized = 'IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE'
$setupErrors = Join-Path $env:SystemRoot 'System32\Sysprep\Panther\setuperr.log'

function Get-ImageState {
    return (Get-ItemProperty -Path $setupState).ImageState
}

function Get-SetupErrorTail {
    if (Test-Path -Path $setupErrors) {
        $lines = @(Get-Content -Path $setupErrors -Tail 15)
        if ($lines.Count -gt 0) { return ($lines -join ' | ') }
    }
    return "no entries in $setupErrors"
}

function Stop-Generalization([string]$Kind, [string]$Message) {
    Write-Output "[image-factory:$Kind] $Message"
    exit 1
}

$state = Get-ImageState
if ($state -eq $generalized) {
    Write-Output "ImageState is already ${state}: nothing to do"
    exit 0
}

# 1. The guest agent.
$deadline = (Get-Date).AddMinutes($agentMinutes)
foreach ($name in @('RdAgent', 'WindowsAzureGuestAgent')) {
    while ($true) {
        $service = Get-Service -Name $name -ErrorAction SilentlyContinue
        $status = if ($null -eq $service) { 'not installed' } else { [string]$service.Status }
        if ($status -eq 'Running') {
            Write-Output "$name is running"
            break
        }
        if ((Get-Date) -gt $deadline) {
            Stop-Generalization 'guest-agent-not-ready' "the Azure guest agent service $name is '$status' after $agentMinutes minute(s) (guest_agent_timeout_minutes); the VM was left as it was, ImageState $state"
        }
        Start-Sleep -Seconds 5
    }
}

# 2. The build's own files do not go into the image.
if (Test-Path -Path $factoryDir) {
    Remove-Item -Path $factoryDir -Recurse -Force
    Write-Output "Removed $factoryDir"
}

# 3. Sysprep once, then the image state until the deadline.
$sysprep = Join-Path $env:SystemRoot 'System32\Sysprep\Sysprep.exe'
$process = Start-Process -FilePath $sysprep -ArgumentList '/oobe', '/generalize', '/quiet', '/quit', '/mode:vm' -PassThru
$null = $process.Handle # keeps the exit code readable once Sysprep has ended
$deadline = (Get-Date).AddMinutes($sysprepMinutes)
$seen = New-Object System.Collections.Generic.List[string]
while ($true) {
    $exited = $process.HasExited
    $state = Get-ImageState
    if ($seen.Count -eq 0 -or $seen[$seen.Count - 1] -ne $state) {
        $seen.Add([string]$state)
        Write-Output "ImageState: $state"
    }
    if ($state -eq $generalized) {
        Write-Output 'Generalized: ready for capture'
        break
    }
    if ($exited) {
        Stop-Generalization 'sysprep-failed' ("Sysprep exited (code {0}) but ImageState is {1}, not {2}; states seen: {3}; setuperr.log: {4}" -f $process.ExitCode, $state, $generalized, ($seen -join ' -> '), (Get-SetupErrorTail))
    }
    if ((Get-Date) -gt $deadline) {
        Stop-Generalization 'sysprep-timeout' ("Sysprep did not reach {0} within {1} minute(s) (sysprep_timeout_minutes; ImageState timeout): last state {2}; states seen: {3}; setuperr.log: {4}" -f $generalized, $sysprepMinutes, $state, ($seen -join ' -> '), (Get-SetupErrorTail))
    }
    Start-Sleep -Seconds 10
}
exit 0
