// The factory's private build network (docs/deploying.md#the-build-network),
// in the build resource group:
//
//   subnet `environment`: the Container Apps environment of the build job
//     (workload-profile VNet integration: delegated to
//     Microsoft.App/environments, at least a /27, and never resized once the
//     environment exists);
//   subnet `vms`: the build VMs packer creates and the test stage's VMs, with
//     no public address; its network security group admits WinRM over HTTPS
//     (5986) from the environment's subnet and nothing else inbound (the
//     test VMs are reached through Run Command, which needs no inbound port);
//     a NAT gateway gives them outbound access (Windows Update), since a
//     subnet of a new virtual network has no default outbound access.
//
// The builder role (roles.bicep) reads the network and joins the `vms`
// subnet; nothing of the factory writes to it.

@description('Name suffix.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Address space of the virtual network.')
param addressPrefix string

@description('The Container Apps environment\'s subnet (at least a /27; see main.bicep).')
param environmentSubnetPrefix string

@description('The build and test VMs\' subnet.')
param vmSubnetPrefix string

// The subnet names the build job and the function app are given.
var environmentSubnetName = 'environment'
var vmSubnetName = 'vms'

resource vmRules 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}-vms'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'allow-winrm-from-environment'
        properties: {
          description: 'packer in the build job reaches the build VM over WinRM (HTTPS)'
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: environmentSubnetPrefix
          sourcePortRange: '*'
          destinationAddressPrefix: vmSubnetPrefix
          destinationPortRange: '5986'
        }
      }
      {
        // Above the default rules (65000 on), which admit the whole virtual
        // network and the Azure load balancer: nothing else comes in.
        name: 'deny-all-other-inbound'
        properties: {
          description: 'nothing else reaches the build and test VMs'
          priority: 4096
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: '*'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource outboundAddress 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: 'pip-${name}-outbound'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource outbound 'Microsoft.Network/natGateways@2024-05-01' = {
  name: 'ng-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: outboundAddress.id
      }
    ]
  }
}

resource network 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    // Declared inline: a redeployment then keeps both subnets instead of
    // removing the ones the network's body does not list.
    subnets: [
      {
        name: environmentSubnetName
        properties: {
          addressPrefix: environmentSubnetPrefix
          delegations: [
            {
              name: 'container-apps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: vmSubnetName
        properties: {
          addressPrefix: vmSubnetPrefix
          networkSecurityGroup: {
            id: vmRules.id
          }
          natGateway: {
            id: outbound.id
          }
          defaultOutboundAccess: false
        }
      }
    ]
  }
}

output name string = network.name
output environmentSubnetName string = environmentSubnetName
output environmentSubnetId string = '${network.id}/subnets/${environmentSubnetName}'
output vmSubnetName string = vmSubnetName
output vmSubnetId string = '${network.id}/subnets/${vmSubnetName}'
output networkSecurityGroupName string = vmRules.name
