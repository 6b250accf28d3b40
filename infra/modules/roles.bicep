// The custom roles of least privilege (subscription scope: role definitions
// live there, assignable only to the groups named).
//
// `builder`: what packer, the test stage and the release stage do, and no
// more, assignable only to the build and gallery resource groups. Packer runs
// with `build_resource_group_name` set to the build group, so it never creates
// or deletes resource groups (no subscription-wide rights). The test stage's
// temporary VM lives in the build group too and is deleted afterwards.
//
// `jobStarter`: lets the function app start (and stop) the build job in the
// app's own group, nothing else.

targetScope = 'subscription'

@description('Environment name, part of the role names.')
param environmentName string

@description('Resource id of the build resource group.')
param buildResourceGroupId string

@description('Resource id of the gallery resource group.')
param galleryResourceGroupId string

@description('Resource id of the app resource group (holds the build job).')
param appResourceGroupId string

resource builder 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'image-factory-builder')
  properties: {
    roleName: 'image-factory builder (${environmentName})'
    description: 'Packer builds, smoke-test VMs and gallery releases of image-factory, limited to its build and gallery resource groups.'
    type: 'CustomRole'
    assignableScopes: [
      buildResourceGroupId
      galleryResourceGroupId
    ]
    permissions: [
      {
        actions: [
          // Packer and the test stage deploy an ARM template into an existing group.
          'Microsoft.Resources/subscriptions/resourceGroups/read'
          'Microsoft.Resources/deployments/read'
          'Microsoft.Resources/deployments/write'
          'Microsoft.Resources/deployments/delete'
          'Microsoft.Resources/deployments/validate/action'
          'Microsoft.Resources/deployments/operations/read'
          'Microsoft.Resources/deployments/operationstatuses/read'
          // The temporary build VM and the smoke-test VM: create, stop, generalize (packer's capture), delete.
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/write'
          'Microsoft.Compute/virtualMachines/delete'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/virtualMachines/powerOff/action'
          'Microsoft.Compute/virtualMachines/deallocate/action'
          'Microsoft.Compute/virtualMachines/generalize/action'
          // Their OS disks.
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/disks/write'
          'Microsoft.Compute/disks/delete'
          // The managed image packer captures before publishing to the gallery.
          'Microsoft.Compute/images/read'
          'Microsoft.Compute/images/write'
          'Microsoft.Compute/images/delete'
          // The temporary network of those VMs (vnet, subnet, NIC, public IP, NSG).
          'Microsoft.Network/virtualNetworks/read'
          'Microsoft.Network/virtualNetworks/write'
          'Microsoft.Network/virtualNetworks/delete'
          'Microsoft.Network/virtualNetworks/subnets/read'
          'Microsoft.Network/virtualNetworks/subnets/write'
          'Microsoft.Network/virtualNetworks/subnets/delete'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
          'Microsoft.Network/networkInterfaces/read'
          'Microsoft.Network/networkInterfaces/write'
          'Microsoft.Network/networkInterfaces/delete'
          'Microsoft.Network/networkInterfaces/join/action'
          'Microsoft.Network/publicIPAddresses/read'
          'Microsoft.Network/publicIPAddresses/write'
          'Microsoft.Network/publicIPAddresses/delete'
          'Microsoft.Network/publicIPAddresses/join/action'
          'Microsoft.Network/networkSecurityGroups/read'
          'Microsoft.Network/networkSecurityGroups/write'
          'Microsoft.Network/networkSecurityGroups/delete'
          'Microsoft.Network/networkSecurityGroups/join/action'
          // Packer's temporary Key Vault holding the WinRM certificate of a Windows build VM.
          'Microsoft.KeyVault/vaults/read'
          'Microsoft.KeyVault/vaults/write'
          'Microsoft.KeyVault/vaults/delete'
          'Microsoft.KeyVault/vaults/deploy/action'
          'Microsoft.KeyVault/vaults/secrets/read'
          'Microsoft.KeyVault/vaults/secrets/write'
          // The gallery: packer publishes a version, the test stage reads it, the release stage updates and prunes versions.
          'Microsoft.Compute/galleries/read'
          'Microsoft.Compute/galleries/images/read'
          'Microsoft.Compute/galleries/images/versions/read'
          'Microsoft.Compute/galleries/images/versions/write'
          'Microsoft.Compute/galleries/images/versions/delete'
        ]
        notActions: []
      }
    ]
  }
}

resource jobStarter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'image-factory-job-starter')
  properties: {
    roleName: 'image-factory job starter (${environmentName})'
    description: 'Start, stop and watch the image-factory build job.'
    type: 'CustomRole'
    assignableScopes: [
      appResourceGroupId
    ]
    permissions: [
      {
        actions: [
          // Read the job and its executions, start one, stop one that overran.
          'Microsoft.App/jobs/read'
          'Microsoft.App/jobs/start/action'
          'Microsoft.App/jobs/stop/action'
          'Microsoft.App/jobs/executions/read'
        ]
        notActions: []
      }
    ]
  }
}

output builderRoleId string = builder.id
output jobStarterRoleId string = jobStarter.id
