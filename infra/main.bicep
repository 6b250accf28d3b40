// image-factory: the whole factory in one deployment (subscription scope, as
// azd provisions it). Three resource groups:
//   rg-<env>          the function app, its storage and monitoring, Service Bus,
//                     Cosmos DB, Key Vault, the identity, the build job and
//                     the build logs' storage;
//   rg-<env>-build    the build network (modules/network.bicep) and where
//                     packer creates its temporary build VM;
//   rg-<env>-gallery  the Azure Compute Gallery.
// The test stage creates one more group per run (imgf-test-...), its VM in
// the build network's VM subnet; the reaper deletes what runs leave behind.
// The factory identity holds the custom `builder` role on the build and
// gallery groups, `jobStarter` on the app group, `tester` on the subscription
// (see modules/roles.bicep) and Storage Blob Data Contributor on the logs'
// and the sources' containers.
// The alerts (modules/alerts.bicep, docs/operations.md#alerts) mail one
// action group; the Patch Tuesday rule reads the gallery as an identity of
// its own, Reader on the workspace and the gallery's group.

targetScope = 'subscription'

@minLength(1)
@maxLength(16)
@description('Environment name (azd: AZURE_ENV_NAME); part of every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of every resource (azd: AZURE_LOCATION).')
param location string

@description('Object id of the operator running the deployment (azd: AZURE_PRINCIPAL_ID); may set Key Vault secrets. Empty: none.')
param principalId string = ''

@description('Container image of the build worker run by the Container Apps job (deploy/worker/Dockerfile, built from the same commit as the function app).')
param buildJobImage string

@description('Login server of the private registry holding buildJobImage (pulled with the factory identity, which needs AcrPull there); empty: a public image.')
param buildJobRegistry string = ''

@description('Client id of the app registration packer signs in as on the build worker (deploy/entra/packer-app.bicep creates it, trusting the factory identity as a federated credential). Empty: packer cannot sign in to Azure on the worker.')
param packerClientId string = ''

@description('Object id of that app registration\'s service principal: it gets the builder role on the build and gallery groups. Empty: no assignment.')
param packerPrincipalId string = ''

@description('Longest build the job allows, in seconds; at least the longest [packer] timeout_minutes of any image (the Windows image: 120 minutes).')
param buildJobTimeoutSeconds int = 14400

@description('How packer builds. private (production): the build VM gets only a private address in the build network\'s VM subnet, and packer reaches it from the build job, whose environment is integrated into that network. public-trial: packer makes a temporary network with a public IP and WinRM open to the image\'s trial_allowed_inbound_ip_addresses; for a first trial only, never for images you release (docs/deploying.md#the-build-network).')
@allowed([
  'private'
  'public-trial'
])
param buildNetwork string = 'private'

@description('Address space of the build network.')
param networkAddressPrefix string = '10.42.0.0/24'

// Sizing (docs/deploying.md#the-build-network): Container Apps reserves 12
// addresses of the subnet and Azure 5; a Consumption workload profile shares
// one address among about ten replicas, and each build is one replica of the
// build job (a job has no revisions, so no doubling during a revision
// change). A /27 (15 addresses left) thus carries about 70 builds at once by
// Microsoft's own table, far above the parallel builds of a factory of tens
// of images. The subnet cannot be resized once the environment exists: take
// a /26 or larger from the start if more apps may join the environment.
@description('The Container Apps environment\'s subnet: at least a /27, delegated to Microsoft.App/environments; cannot be resized once the environment exists.')
param environmentSubnetPrefix string = '10.42.0.0/27'

// One address per build VM and per test VM at once (Azure keeps 5 of the
// subnet): a /26 holds 59, a build and a test of 29 images at the same time.
@description('The build and test VMs\' subnet: one address per VM alive at once.')
param vmSubnetPrefix string = '10.42.0.64/26'

@description('The reaper reports what it would delete and deletes nothing (IMAGE_FACTORY_REAPER_DRY_RUN).')
param reaperDryRun bool = false

@description('Hours after which the reaper deletes a tagged resource whose run this factory does not know (IMAGE_FACTORY_REAPER_MAX_AGE_HOURS); longer than any build and test.')
param reaperMaxAgeHours int = 24

@description('VM size of the test stage\'s VM.')
param testVmSize string = 'Standard_D2s_v5'

@description('Days a build log is kept.')
param buildLogRetentionDays int = 365

@description('Memory of one function app instance, in MB (Flex Consumption: 512, 2048 or 4096).')
param instanceMemoryMB int = 2048

@description('Most instances the function app scales out to (Flex Consumption: 40 to 1000).')
param maximumInstanceCount int = 40

@description('Service Bus tier: Basic serves the factory and costs cents a month for a small estate; Standard adds a base charge of about 10 USD a month (docs/costs.md).')
@allowed([
  'Basic'
  'Standard'
])
param serviceBusSku string = 'Basic'

@description('Time zone of the Patch Tuesday build (IANA name).')
param patchTuesdayZone string = 'UTC'

@description('Days after Patch Tuesday the monthly build runs.')
param patchTuesdayOffsetDays int = 1

@description('Hour (in the zone) the monthly build runs.')
param patchTuesdayHour int = 6

@minValue(0)
@maxValue(27)
@description('Days after the monthly build time by which every image is released: an image unpatched then is overdue in the fleet view (IMAGE_FACTORY_PATCH_GRACE_DAYS), and the Patch Tuesday alert fires.')
param patchGraceDays int = 7

@description('Where the factory\'s alerts are mailed (docs/operations.md#alerts). Empty: the alerts show in the portal only.')
param alertEmail string = ''

@description('Branches whose pushes build, comma-separated.')
param branches string = 'main'

@description('Azure DevOps push webhooks are used (Key Vault secret azure-devops-secret must exist).')
param azureDevOpsWebhooks bool = false

@description('Approvers are told through Teams (Key Vault secret teams-webhook-url must exist).')
param teamsNotifications bool = false

@description('Client id of the factory\'s app registration for sign-in (App Service authentication with Entra ID in front of the dashboard and the API; docs/sign-in.md). Empty: no sign-in. Key Vault secret sign-in-client-secret must hold the registration\'s client secret.')
param signInClientId string = ''

@description('The Azure Communication Services resource approval emails are sent through, https://<name>.communication.azure.com (IMAGE_FACTORY_EMAIL_ENDPOINT). Empty: no email.')
param emailEndpoint string = ''

@description('The verified sender address of the approval emails, DoNotReply@<domain> (IMAGE_FACTORY_EMAIL_SENDER).')
param emailSender string = ''

@description('Who the approvers image.toml names are: name=email-or-object-id pairs, comma-separated (IMAGE_FACTORY_APPROVERS). Empty: image.toml names each approver by email address or Entra ID object id.')
param approvers string = ''

@description('GitHub App that tags released commits (IMAGE_FACTORY_GITHUB_APP_ID); empty: no GitHub tags. Key Vault secret github-app-private-key must hold its PEM key.')
param githubAppId string = ''

@description('The GitHub App\'s installation id (IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID).')
param githubAppInstallationId string = ''

@minLength(1)
@description('The repository holding the images folder (IMAGE_FACTORY_REPOSITORY): https://github.com/<owner>/<repository> or https://dev.azure.com/<organization>/<project>/_git/<repository>. Runs no push started (Patch Tuesday, out-of-band, a new base image, a parent\'s release) build the head of its first built branch.')
param sourceRepository string

@description('Deployment time; sets the expiry of the generated send-only Service Bus secret.')
param deployedAt string = utcNow()

var token = toLower(uniqueString(subscription().id, environmentName, location))
var name = 'imgf-${environmentName}'
var tags = {
  'azd-env-name': environmentName
  application: 'image-factory'
}
// The send-only connection string secret expires a year after each deployment; redeploying renews it.
var secretExpiry = dateTimeToEpoch(dateTimeAdd(deployedAt, 'P1Y'))

resource appGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

resource buildGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}-build'
  location: location
  tags: tags
}

resource galleryGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}-gallery'
  location: location
  tags: tags
}

module network 'modules/network.bicep' = {
  name: 'network'
  scope: buildGroup
  params: {
    name: name
    location: location
    tags: tags
    addressPrefix: networkAddressPrefix
    environmentSubnetPrefix: environmentSubnetPrefix
    vmSubnetPrefix: vmSubnetPrefix
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: appGroup
  params: {
    name: 'id-${name}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: appGroup
  params: {
    name: name
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: appGroup
  params: {
    name: 'stimgf${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module logs 'modules/logs.bicep' = {
  name: 'logs'
  scope: appGroup
  params: {
    name: 'stimgflog${take(token, 15)}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    retentionDays: buildLogRetentionDays
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: appGroup
  params: {
    name: 'kv-imgf-${take(token, 12)}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

// The operator may set the secrets (Key Vault Secrets Officer), when known.
module operatorSecrets 'modules/secrets-officer.bicep' = if (!empty(principalId)) {
  name: 'operator-secrets'
  scope: appGroup
  params: {
    keyVaultName: keyVault.outputs.name
    principalId: principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: appGroup
  params: {
    name: 'sb-${name}-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    keyVaultName: keyVault.outputs.name
    secretExpiry: secretExpiry
    sku: serviceBusSku
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: appGroup
  params: {
    name: 'cosmos-${name}-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module events 'modules/events.bicep' = {
  name: 'events'
  scope: appGroup
  params: {
    name: 'evgt-${name}-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module gallery 'modules/gallery.bicep' = {
  name: 'gallery'
  scope: galleryGroup
  params: {
    name: 'gal_imgf_${token}'
    location: location
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    environmentName: environmentName
    buildResourceGroupId: buildGroup.id
    galleryResourceGroupId: galleryGroup.id
    appResourceGroupId: appGroup.id
    buildNetwork: buildNetwork
  }
}

module builderOnBuild 'modules/role-assignment.bicep' = {
  name: 'builder-on-build'
  scope: buildGroup
  params: {
    roleDefinitionId: roles.outputs.builderRoleId
    principalId: identity.outputs.principalId
  }
}

module builderOnGallery 'modules/role-assignment.bicep' = {
  name: 'builder-on-gallery'
  scope: galleryGroup
  params: {
    roleDefinitionId: roles.outputs.builderRoleId
    principalId: identity.outputs.principalId
  }
}

// packer signs in as the app registration (see modules/containerapps.bicep):
// its service principal builds and publishes, so it holds the builder role
// where the factory identity does.
module packerBuilderOnBuild 'modules/role-assignment.bicep' = if (!empty(packerPrincipalId)) {
  name: 'packer-builder-on-build'
  scope: buildGroup
  params: {
    roleDefinitionId: roles.outputs.builderRoleId
    principalId: packerPrincipalId
  }
}

module packerBuilderOnGallery 'modules/role-assignment.bicep' = if (!empty(packerPrincipalId)) {
  name: 'packer-builder-on-gallery'
  scope: galleryGroup
  params: {
    roleDefinitionId: roles.outputs.builderRoleId
    principalId: packerPrincipalId
  }
}

module jobStarterOnApp 'modules/role-assignment.bicep' = {
  name: 'job-starter-on-app'
  scope: appGroup
  params: {
    roleDefinitionId: roles.outputs.jobStarterRoleId
    principalId: identity.outputs.principalId
  }
}

// The test stage's per-run groups do not exist before the run: `tester` is
// assigned at the subscription (the trade-off is explained in roles.bicep).
resource testerOnSubscription 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'image-factory-tester-assignment')
  properties: {
    roleDefinitionId: roles.outputs.testerRoleId
    principalId: identity.outputs.principalId
    principalType: 'ServicePrincipal'
  }
}

module containerApps 'modules/containerapps.bicep' = {
  name: 'containerapps'
  scope: appGroup
  params: {
    name: name
    location: location
    tags: tags
    workspaceName: 'log-${name}'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    image: buildJobImage
    registryServer: buildJobRegistry
    replicaTimeout: buildJobTimeoutSeconds
    sourcesUrl: logs.outputs.sourcesUrl
    sendConnectionSecretUri: '${keyVault.outputs.uri}secrets/${serviceBus.outputs.sendSecretName}'
    appInsightsConnectionString: monitoring.outputs.connectionString
    packerClientId: packerClientId
    buildResourceGroup: buildGroup.name
    galleryResourceGroup: galleryGroup.name
    galleryName: gallery.outputs.name
    environmentSubnetId: network.outputs.environmentSubnetId
    buildNetwork: buildNetwork
    virtualNetworkName: network.outputs.name
    vmSubnetName: network.outputs.vmSubnetName
    networkResourceGroup: buildGroup.name
  }
  dependsOn: [
    monitoring
  ]
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: appGroup
  params: {
    name: name
    location: location
    tags: tags
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    appInsightsConnectionString: monitoring.outputs.connectionString
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabase: cosmos.outputs.databaseName
    cosmosContainer: cosmos.outputs.containerName
    keyVaultName: keyVault.outputs.name
    patchTuesdayZone: patchTuesdayZone
    patchTuesdayOffsetDays: patchTuesdayOffsetDays
    patchTuesdayHour: patchTuesdayHour
    patchGraceDays: patchGraceDays
    branches: branches
    azureDevOpsWebhooks: azureDevOpsWebhooks
    teamsNotifications: teamsNotifications
    signInClientId: signInClientId
    emailEndpoint: emailEndpoint
    emailSender: emailSender
    approvers: approvers
    githubAppId: githubAppId
    githubAppInstallationId: githubAppInstallationId
    // The Azure path: gallery, builds off the host, the test stage.
    galleryResourceGroup: galleryGroup.name
    galleryName: gallery.outputs.name
    buildJobName: containerApps.outputs.jobName
    buildJobResourceGroup: appGroup.name
    buildLogsUrl: logs.outputs.containerUrl
    sourcesUrl: logs.outputs.sourcesUrl
    sourceRepository: sourceRepository
    testLocation: location
    testVmSize: testVmSize
    testSubnetId: network.outputs.vmSubnetId
    reaperDryRun: reaperDryRun
    reaperMaxAgeHours: reaperMaxAgeHours
    eventGridEndpoint: events.outputs.endpoint
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: appGroup
  params: {
    name: name
    location: location
    tags: tags
    alertEmail: alertEmail
    serviceBusNamespaceId: serviceBus.outputs.id
    appInsightsId: monitoring.outputs.insightsId
    workspaceName: monitoring.outputs.workspaceName
    galleryResourceGroup: galleryGroup.name
    patchTuesdayOffsetDays: patchTuesdayOffsetDays
    patchTuesdayHour: patchTuesdayHour
    patchReleaseDays: patchGraceDays
  }
}

// The Patch Tuesday alert reads the gallery's versions through Resource Graph.
module alertReadsGallery 'modules/role-assignment.bicep' = {
  name: 'alert-reads-gallery'
  scope: galleryGroup
  params: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'acdd72a7-3385-48ef-bd42-f606fba81ae7')
    principalId: alerts.outputs.patchTuesdayPrincipalId
  }
}

// Outputs azd stores in the environment (.azure/<env>/.env).
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = appGroup.name
output AZURE_BUILD_RESOURCE_GROUP string = buildGroup.name
output AZURE_GALLERY_RESOURCE_GROUP string = galleryGroup.name
output AZURE_GALLERY_NAME string = gallery.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_CLIENT_ID string = identity.outputs.clientId
// The factory identity's object id: the subject of the packer app's federated credential.
output FACTORY_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output BUILD_JOB_NAME string = containerApps.outputs.jobName
output BUILD_LOGS_URL string = logs.outputs.containerUrl
output SOURCES_URL string = logs.outputs.sourcesUrl
// The build and test VMs' subnet: doctor --url checks the build network from it.
output IMAGE_FACTORY_TEST_SUBNET_ID string = network.outputs.vmSubnetId
output FUNCTION_APP_NAME string = functionApp.outputs.name
output IMAGE_FACTORY_PUBLIC_URL string = functionApp.outputs.url
