// The custom roles of least privilege (subscription scope: role definitions
// live there, assignable only to the scopes named).
//
// `builder`: what packer, the build stage's gallery image definitions and the
// release stage do, and no more, assignable
// only to the build and gallery resource groups. Packer runs with
// `build_resource_group_name` set to the build group (the build job's
// PKR_VAR_build_resource_group_name), so it never creates or deletes resource
// groups. On the gallery group it also lets the test stage read the version
// it creates a VM from (Microsoft.Compute/galleries/images/versions/read).
//
// `jobStarter`: lets the function app read the build job, start an execution,
// read executions and stop one, in the app's own group, nothing else.
//
// `tester`: the test stage's per-run resource groups (see the role itself for
// the trade-off of its subscription scope).

targetScope = 'subscription'

@description('Environment name, part of the role names.')
param environmentName string

@description('Resource id of the build resource group.')
param buildResourceGroupId string

@description('Resource id of the gallery resource group.')
param galleryResourceGroupId string

@description('Resource id of the app resource group (holds the build job).')
param appResourceGroupId string

// The subscription's id, named: the published Bicep grammar (which the test
// suite's type check parses with) misreads a function call that opens an
// array, so `[ subscription().id ]` is written `[ subscriptionId ]`.
var subscriptionId = subscription().id

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
          // Packer deploys an ARM template into the existing build group.
          'Microsoft.Resources/subscriptions/resourceGroups/read'
          'Microsoft.Resources/deployments/read'
          'Microsoft.Resources/deployments/write'
          'Microsoft.Resources/deployments/delete'
          'Microsoft.Resources/deployments/validate/action'
          'Microsoft.Resources/deployments/operations/read'
          'Microsoft.Resources/deployments/operationstatuses/read'
          // The temporary build VM: create, stop, generalize (packer's capture), delete.
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
          // The gallery: the build stage creates or updates each image's definition from its image.toml, packer publishes a version, the test stage reads it (to create its VM from it), the release stage updates and prunes versions.
          'Microsoft.Compute/galleries/read'
          'Microsoft.Compute/galleries/images/read'
          'Microsoft.Compute/galleries/images/write'
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
    description: 'Start, stop and watch executions of the image-factory build job.'
    type: 'CustomRole'
    assignableScopes: [
      appResourceGroupId
    ]
    permissions: [
      {
        // Names as the Microsoft.App provider lists its operations. Not
        // jobs/write (the job's image and identity stay the deployment's) and
        // not jobs/stop/action (stops every execution at once).
        actions: [
          // GET the job (its template is the body of a start).
          'Microsoft.App/jobs/read'
          // POST .../start with the order added to the worker's environment.
          'Microsoft.App/jobs/start/action'
          // GET .../executions (adoption of a worker already started for a message).
          'Microsoft.App/jobs/executions/read'
          // GET .../executions/{name} (the watchdog's view of one worker).
          'Microsoft.App/jobs/execution/read'
          // POST .../executions/{name}/stop (a worker past its build timeout).
          'Microsoft.App/jobs/stop/execution/action'
        ]
        notActions: []
      }
    ]
  }
}

// The test stage creates a resource group per run (`imgf-test-...`, tagged
// `image-factory: test`) holding a VNet, a NIC and a VM made from the gallery
// version, runs the smoke check through Run Command and deletes the group;
// the sweeper lists groups by tag and deletes old ones.
//
// Trade-off: a group that does not exist yet can only be created with a
// role at subscription scope, so this role is assignable to (and assigned
// at) the subscription. Azure RBAC cannot limit control-plane actions to
// groups of a name or tag, so the identity could also create empty groups
// anywhere in the subscription, and delete a group whose resources are all of
// the kinds listed here (deleting a group needs delete rights on everything
// in it). What it cannot do: touch any other resource type (no storage, no
// Key Vault, no role assignments, no public IPs, no extensions), read data, or
// delete a group holding anything else. Narrower still would be a dedicated
// test subscription (assign this role there), or test VMs in the build group
// (no subscription scope at all, but the stage's per-run isolation and the
// sweeper's group deletion would have to change). Azure Policy judges the
// resource, not the caller, so it cannot confine this identity to
// `imgf-test-*` groups either; a dedicated subscription is the recommended
// hardening.
resource tester 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'image-factory-tester')
  properties: {
    roleName: 'image-factory tester (${environmentName})'
    description: 'The image-factory test stage: per-run resource groups with a network, a VM from the gallery version and Run Command; the sweeper of those groups.'
    type: 'CustomRole'
    assignableScopes: [
      subscriptionId
    ]
    permissions: [
      {
        actions: [
          // The per-run group: create (PUT with tags), read, list by tag (the sweeper), delete.
          'Microsoft.Resources/subscriptions/resourceGroups/read'
          'Microsoft.Resources/subscriptions/resourceGroups/write'
          'Microsoft.Resources/subscriptions/resourceGroups/delete'
          // Polling the group deletion (Location: .../operationresults/...).
          'Microsoft.Resources/subscriptions/operationresults/read'
          // The isolated network: a VNet with one subnet, a NIC with a private address.
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
          'Microsoft.Network/locations/operations/read'
          // The VM and its OS disk (created from the gallery version; reading
          // that version is granted by `builder` on the gallery group).
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/write'
          'Microsoft.Compute/virtualMachines/delete'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/disks/write'
          'Microsoft.Compute/disks/delete'
          // The smoke check inside the VM (POST .../runCommand) and its result.
          'Microsoft.Compute/virtualMachines/runCommand/action'
          'Microsoft.Compute/locations/operations/read'
        ]
        notActions: []
      }
    ]
  }
}

output builderRoleId string = builder.id
output jobStarterRoleId string = jobStarter.id
output testerRoleId string = tester.id
