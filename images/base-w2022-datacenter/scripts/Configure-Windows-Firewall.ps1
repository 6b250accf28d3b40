# Locks the firewall down: every profile on, inbound blocked by default, HTTP
# (80, the smoke test) allowed, WinRM over HTTPS (5986) and RDP (3389) only
# from the management ranges in MANAGEMENT_CIDRS (comma-separated addresses or
# CIDR ranges; default: the private ranges 10.0.0.0/8, 172.16.0.0/12 and
# 192.168.0.0/16, where a private build's packer is; the subnet's network
# security group narrows it further). The rest of the build still needs WinRM
# from packer's address, so a trial over a public IP passes that address.
# Idempotent: a rule that exists is updated, not added twice.
$ErrorActionPreference = 'Stop'
$management = if ($env:MANAGEMENT_CIDRS) { @($env:MANAGEMENT_CIDRS -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ }) } else { @('10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16') }

Set-NetFirewallProfile -Profile Domain, Public, Private -Enabled True -DefaultInboundAction Block -DefaultOutboundAction Allow

function Set-Rule([string]$Name, [int]$Port, [string[]]$From) {
    $existing = Get-NetFirewallRule -DisplayName $Name -ErrorAction SilentlyContinue
    if ($existing) {
        $existing | Set-NetFirewallRule -Enabled True -Action Allow
        $existing | Get-NetFirewallAddressFilter | Set-NetFirewallAddressFilter -RemoteAddress $From
        Write-Output "Updated rule $Name"
    } else {
        New-NetFirewallRule -DisplayName $Name -Direction Inbound -Protocol TCP -LocalPort $Port -RemoteAddress $From -Action Allow | Out-Null
        Write-Output "Added rule $Name"
    }
}

Set-Rule -Name 'image-factory HTTP' -Port 80 -From @('Any')
Set-Rule -Name 'image-factory WinRM HTTPS' -Port 5986 -From $management
Set-Rule -Name 'image-factory RDP' -Port 3389 -From $management

# The unencrypted WinRM listener is not needed once the image is built.
Get-NetFirewallRule -DisplayName 'Windows Remote Management (HTTP-In)' -ErrorAction SilentlyContinue | Disable-NetFirewallRule
