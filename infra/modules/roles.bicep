// The custom roles of least privilege (subscription scope: role definitions
// live there, assignable only to the scopes named).
//
// `builder`: what packer, the build stage's gallery image definitions, the
// reaper (in the build group) and the release stage do, and no more, assignable only to the build and gallery resource
// groups. Packer runs with `build_resource_group_name` set to the build group
// (the build job's PKR_VAR_build_resource_group_name), so it never creates or
// deletes resource groups, and publishes straight to the gallery (no managed
// image). In the private build network it only reads the network and joins
// its VM subnet; in public-trial mode it also makes a temporary network. On
// the gallery group it also lets the test stage read the version it creates
// a VM from (Microsoft.Compute/galleries/images/versions/read).
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

@description('How packer builds (main.bicep): private, or public-trial, where packer also makes a temporary network, public IP and network security group.')
@allowed([
  'private'
  'public-trial'
])
param buildNetwork string = 'private'

// The subscription's id, named: the published Bicep grammar (which the test
// suite's type check parses with) misreads a function call that opens an
// array, so `[ subscription().id ]` is written `[ subscriptionId ]`.
var subscriptionId = subscription().id

// What the builder does in either network mode.
var builderActions = [
  // Packer deploys an ARM template into the existing build group.
  'Microsoft.Resources/subscriptions/resourceGroups/read'
  'Microsoft.Resources/deployments/read'
  'Microsoft.Resources/deployments/write'
  'Microsoft.Resources/deployments/delete'
  'Microsoft.Resources/deployments/validate/action'
  'Microsoft.Resources/deployments/operations/read'
  'Microsoft.Resources/deployments/operationstatuses/read'
  // The temporary build VM: create, stop, generalize, delete; after a failed
  // build the reaper turns on its boot diagnostics (write) and reads them.
  'Microsoft.Compute/virtualMachines/read'
  'Microsoft.Compute/virtualMachines/write'
  'Microsoft.Compute/virtualMachines/delete'
  'Microsoft.Compute/virtualMachines/instanceView/read'
  'Microsoft.Compute/virtualMachines/powerOff/action'
  'Microsoft.Compute/virtualMachines/deallocate/action'
  'Microsoft.Compute/virtualMachines/generalize/action'
  'Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action'
  // Their OS disks.
  'Microsoft.Compute/disks/read'
  'Microsoft.Compute/disks/write'
  'Microsoft.Compute/disks/delete'
  // The reaper tags a kept build VM's untagged OS disk with the VM's run
  // before deleting the VM, so that the disk is reaped next (docs/reaper.md).
  'Microsoft.Resources/tags/write'
  // The build VM's NIC, in the build network's VM subnet (read the network,
  // join its subnet; nothing of the network is written).
  'Microsoft.Network/virtualNetworks/read'
  'Microsoft.Network/virtualNetworks/subnets/read'
  'Microsoft.Network/virtualNetworks/subnets/join/action'
  'Microsoft.Network/networkInterfaces/read'
  'Microsoft.Network/networkInterfaces/write'
  'Microsoft.Network/networkInterfaces/delete'
  'Microsoft.Network/networkInterfaces/join/action'
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

// public-trial only: packer makes a temporary network, public IP and network
// security group of its own in the build group (and the reaper deletes them
// when a build leaves them behind).
var trialNetworkActions = [
  'Microsoft.Network/virtualNetworks/write'
  'Microsoft.Network/virtualNetworks/delete'
  'Microsoft.Network/virtualNetworks/subnets/write'
  'Microsoft.Network/virtualNetworks/subnets/delete'
  'Microsoft.Network/publicIPAddresses/read'
  'Microsoft.Network/publicIPAddresses/write'
  'Microsoft.Network/publicIPAddresses/delete'
  'Microsoft.Network/publicIPAddresses/join/action'
  'Microsoft.Network/networkSecurityGroups/read'
  'Microsoft.Network/networkSecurityGroups/write'
  'Microsoft.Network/networkSecurityGroups/delete'
  'Microsoft.Network/networkSecurityGroups/join/action'
]

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
        actions: concat(builderActions, buildNetwork == 'private' ? [] : trialNetworkActions)
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
// `image-factory: test` and with the run) holding a NIC in the build
// network's VM subnet and a VM made from the gallery version, runs the smoke
// check through Run Command and deletes the group (a failed test keeps it for
// its boot diagnostics). The reaper lists what runs left behind across the
// subscription, reads boot diagnostics, and deletes tagged groups.
//
// Trade-off: a group that does not exist yet can only be created with a
// role at subscription scope, so this role is assignable to (and assigned
// at) the subscription. Azure RBAC cannot limit control-plane actions to
// groups of a name or tag, so the identity could also create empty groups
// anywhere in the subscription, and delete a group whose resources are all of
// the kinds listed here (deleting a group needs delete rights on everything
// in it), and write tags on any resource (the test VM's OS disk is tagged
// with its run after the VM is made: a VM's implicit disk takes no tags).
// What it cannot do: touch any other resource type (no storage, no Key
// Vault, no role assignments, no networks, no public IPs, no extensions),
// read data, or delete a group holding anything else. Narrower still would be a dedicated
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
    description: 'The image-factory test stage: per-run resource groups with a NIC in the build network, a VM from the gallery version and Run Command; the reaper of what runs leave behind.'
    type: 'CustomRole'
    assignableScopes: [
      subscriptionId
    ]
    permissions: [
      {
        actions: [
          // The per-run group: create (PUT with tags), read, list by tag (the reaper), delete.
          'Microsoft.Resources/subscriptions/resourceGroups/read'
          'Microsoft.Resources/subscriptions/resourceGroups/write'
          'Microsoft.Resources/subscriptions/resourceGroups/delete'
          // Polling the group deletion (Location: .../operationresults/...).
          'Microsoft.Resources/subscriptions/operationresults/read'
          // The reaper's listing of tagged resources across the subscription.
          'Microsoft.Resources/subscriptions/resources/read'
          // The test VM's OS disk, tagged with its run after the VM is made.
          'Microsoft.Resources/tags/write'
          // The NIC, with a private address in the build network's VM subnet.
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
          // A failed test keeps its VM: the reaper reads its boot diagnostics.
          'Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action'
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
