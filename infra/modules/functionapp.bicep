// The function app: Linux, custom handler, on the Flex Consumption plan
// (FC1). Why Flex, and what was checked first (custom handlers on Flex, App
// Service authentication, how azd deploys): docs/deploying-flex.md. The
// runtime is declared in functionAppConfig (name `custom`, version `1.0`, as
// Azure's function-app stack data lists it for FC1), not in app settings:
// Flex deprecates FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE and the content-share settings, and has no Always
// On. The package goes to a blob container of the host storage account, read
// with the user-assigned identity. Every connection is identity-based
// (storage, Service Bus, Cosmos DB, Application Insights); secrets are Key
// Vault references resolved with the same user-assigned identity.

@description('Name prefix.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Memory of one instance, in MB (Flex Consumption sizes).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to (Flex Consumption allows 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('The blob container the deployment package is uploaded to, https://<account>.blob.core.windows.net/<container>.')
param deploymentContainerUrl string

@description('Resource id of the factory identity.')
param identityId string

@description('Client id of the factory identity.')
param identityClientId string

@description('Host storage account name (AzureWebJobsStorage).')
param storageAccountName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Fully qualified Service Bus namespace.')
param serviceBusNamespace string

@description('Cosmos DB endpoint.')
param cosmosEndpoint string

@description('Cosmos DB database.')
param cosmosDatabase string

@description('Cosmos DB container.')
param cosmosContainer string

@description('Key Vault name holding the secrets.')
param keyVaultName string

@description('Time zone of the Patch Tuesday build (IANA name).')
param patchTuesdayZone string

@description('Days after Patch Tuesday the monthly build runs.')
param patchTuesdayOffsetDays int

@description('Hour (in the zone) the monthly build runs.')
param patchTuesdayHour int

@description('Days after the monthly build time an unpatched image is due before it is overdue (the fleet view; the Patch Tuesday alert).')
param patchGraceDays int

@description('Branches whose pushes build, comma-separated.')
param branches string

@description('Azure DevOps webhooks are used (IMAGE_FACTORY_AZURE_DEVOPS_SECRET from Key Vault).')
param azureDevOpsWebhooks bool

@description('Approvers are told through Teams (IMAGE_FACTORY_TEAMS_WEBHOOK_URL from Key Vault).')
param teamsNotifications bool

@description('Client id of the factory\'s app registration: App Service authentication with Entra ID signs callers in to the dashboard and the API (docs/sign-in.md). Empty: no sign-in.')
param signInClientId string

@description('Azure Communication Services endpoint of the approval emails (IMAGE_FACTORY_EMAIL_ENDPOINT); empty: no email.')
param emailEndpoint string

@description('Verified sender address of the approval emails (IMAGE_FACTORY_EMAIL_SENDER).')
param emailSender string

@description('Approvers as name=email-or-object-id pairs (IMAGE_FACTORY_APPROVERS).')
param approvers string

@description('GitHub App that tags released commits (IMAGE_FACTORY_GITHUB_APP_ID); empty: none. Its key is the Key Vault secret github-app-private-key.')
param githubAppId string

@description('The GitHub App\'s installation id (IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID).')
param githubAppInstallationId string
@description('The release events\' Event Grid topic endpoint (IMAGE_FACTORY_EVENT_GRID_ENDPOINT).')
param eventGridEndpoint string

@description('The gallery\'s resource group (IMAGE_FACTORY_GALLERY_RESOURCE_GROUP).')
param galleryResourceGroup string

@description('The gallery (IMAGE_FACTORY_GALLERY).')
param galleryName string

@description('The Container Apps job whose executions build off the host (IMAGE_FACTORY_BUILD_JOB).')
param buildJobName string

@description('The build job\'s resource group (IMAGE_FACTORY_BUILD_JOB_RESOURCE_GROUP).')
param buildJobResourceGroup string

@description('The build logs\' container, https://<account>.blob.core.windows.net/<container>, no SAS (IMAGE_FACTORY_BUILD_LOGS_URL).')
param buildLogsUrl string

@description('The source snapshots\' container, https://<account>.blob.core.windows.net/sources, no SAS (IMAGE_FACTORY_SOURCES_URL).')
param sourcesUrl string

@description('The repository whose branch head the runs no push started build: https://github.com/<owner>/<repository> or https://dev.azure.com/<organization>/<project>/_git/<repository> (IMAGE_FACTORY_REPOSITORY).')
param sourceRepository string

@description('Region of the test stage\'s resource groups and VMs (IMAGE_FACTORY_TEST_LOCATION).')
param testLocation string

@description('Size of the test stage\'s VM (IMAGE_FACTORY_TEST_VM_SIZE).')
param testVmSize string

@description('The build network\'s VM subnet, where the test VM\'s NIC goes (IMAGE_FACTORY_TEST_SUBNET_ID).')
param testSubnetId string

@description('The reaper deletes nothing and reports what it would delete (IMAGE_FACTORY_REAPER_DRY_RUN).')
param reaperDryRun bool

@description('Hours after which the reaper deletes a tagged resource of a run the factory does not know (IMAGE_FACTORY_REAPER_MAX_AGE_HOURS).')
param reaperMaxAgeHours int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'asp-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    //checkov:skip=CKV_AZURE_225: Flex Consumption scales per function from zero; zone redundancy would keep always-ready instances running for nothing to recover (builds run in the Container Apps job, Service Bus redelivers what an instance loses).
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

var secret = 'VaultName=${keyVaultName};SecretName='
var siteName = 'func-${name}'
// The default host name of a new app (no regional unique host name requested).
var publicUrl = 'https://${siteName}.azurewebsites.net'

var devOpsSecretSetting = [
  {
    name: 'IMAGE_FACTORY_AZURE_DEVOPS_SECRET'
    value: '@Microsoft.KeyVault(${secret}azure-devops-secret)'
  }
]
var teamsSecretSetting = [
  {
    name: 'IMAGE_FACTORY_TEAMS_WEBHOOK_URL'
    value: '@Microsoft.KeyVault(${secret}teams-webhook-url)'
  }
]
var githubAppSettings = [
  {
    name: 'IMAGE_FACTORY_GITHUB_APP_ID'
    value: githubAppId
  }
  {
    name: 'IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID'
    value: githubAppInstallationId
  }
  {
    name: 'IMAGE_FACTORY_GITHUB_APP_PRIVATE_KEY'
    value: '@Microsoft.KeyVault(${secret}github-app-private-key)'
  }
]
// Sign-in: the handler refuses the API and the dashboard without a signed-in
// principal, and operator actions without the operator app role; the
// platform signs in with the registration's client secret from Key Vault.
var signInSettings = [
  {
    name: 'IMAGE_FACTORY_SIGN_IN'
    value: 'entra'
  }
  {
    name: 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'
    value: '@Microsoft.KeyVault(${secret}sign-in-client-secret)'
  }
]
var emailSettings = [
  {
    name: 'IMAGE_FACTORY_EMAIL_ENDPOINT'
    value: emailEndpoint
  }
  {
    name: 'IMAGE_FACTORY_EMAIL_SENDER'
    value: emailSender
  }
]
var approverSettings = [
  {
    name: 'IMAGE_FACTORY_APPROVERS'
    value: approvers
  }
]
var optionalSecrets = concat(azureDevOpsWebhooks ? devOpsSecretSetting : [], teamsNotifications ? teamsSecretSetting : [], empty(githubAppId) ? [] : githubAppSettings, empty(signInClientId) ? [] : signInSettings, empty(emailEndpoint) || empty(emailSender) ? [] : emailSettings, empty(approvers) ? [] : approverSettings)

// No FUNCTIONS_WORKER_RUNTIME or FUNCTIONS_EXTENSION_VERSION: on Flex the
// runtime is functionAppConfig.runtime and the host version is the platform's.
var baseSettings = [
  // Host storage, identity-based.
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  // Telemetry with Entra ID auth (local auth is off on the component).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  // The ServiceBus connection of every function.json, identity-based.
  {
    name: 'ServiceBus__fullyQualifiedNamespace'
    value: serviceBusNamespace
  }
  {
    name: 'ServiceBus__credential'
    value: 'managedidentity'
  }
  {
    name: 'ServiceBus__clientId'
    value: identityClientId
  }
  // Run store.
  {
    name: 'IMAGE_FACTORY_STORE'
    value: 'cosmos'
  }
  {
    name: 'COSMOS_ENDPOINT'
    value: cosmosEndpoint
  }
  {
    name: 'COSMOS_DATABASE'
    value: cosmosDatabase
  }
  {
    name: 'COSMOS_CONTAINER'
    value: cosmosContainer
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  // Factory settings.
  {
    name: 'IMAGE_FACTORY_PUBLIC_URL'
    value: publicUrl
  }
  {
    name: 'IMAGE_FACTORY_IMAGES'
    value: '/home/site/wwwroot/images'
  }
  {
    name: 'IMAGE_FACTORY_DATA'
    value: '/tmp/image-factory'
  }
  {
    name: 'IMAGE_FACTORY_BRANCHES'
    value: branches
  }
  {
    name: 'IMAGE_FACTORY_PATCH_TUESDAY_ZONE'
    value: patchTuesdayZone
  }
  {
    name: 'IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS'
    value: string(patchTuesdayOffsetDays)
  }
  {
    name: 'IMAGE_FACTORY_PATCH_TUESDAY_HOUR'
    value: string(patchTuesdayHour)
  }
  {
    name: 'IMAGE_FACTORY_PATCH_GRACE_DAYS'
    value: string(patchGraceDays)
  }
  // The Azure path: with the subscription set the factory calls Resource
  // Manager (gallery release, base-image watch, test VMs, the build job).
  {
    name: 'IMAGE_FACTORY_SUBSCRIPTION_ID'
    value: subscription().subscriptionId
  }
  {
    name: 'IMAGE_FACTORY_GALLERY_RESOURCE_GROUP'
    value: galleryResourceGroup
  }
  {
    name: 'IMAGE_FACTORY_GALLERY'
    value: galleryName
  }
  // Builds off the host: the build stage starts an execution of this job.
  {
    name: 'IMAGE_FACTORY_BUILD_JOB'
    value: buildJobName
  }
  {
    name: 'IMAGE_FACTORY_BUILD_JOB_RESOURCE_GROUP'
    value: buildJobResourceGroup
  }
  {
    name: 'IMAGE_FACTORY_BUILD_LOGS_URL'
    value: buildLogsUrl
  }
  // Every run's source: the pushed commit (or the branch head) fetched from
  // its repository, snapshotted in the sources container.
  {
    name: 'IMAGE_FACTORY_SOURCES_URL'
    value: sourcesUrl
  }
  {
    name: 'IMAGE_FACTORY_REPOSITORY'
    value: sourceRepository
  }
  // Release events, published with the factory identity.
  {
    name: 'IMAGE_FACTORY_EVENT_GRID_ENDPOINT'
    value: eventGridEndpoint
  }
  // The test stage's VM.
  {
    name: 'IMAGE_FACTORY_TEST_LOCATION'
    value: testLocation
  }
  {
    name: 'IMAGE_FACTORY_TEST_VM_SIZE'
    value: testVmSize
  }
  {
    name: 'IMAGE_FACTORY_TEST_SUBNET_ID'
    value: testSubnetId
  }
  // The reaper of what runs leave behind (docs/reaper.md).
  {
    name: 'IMAGE_FACTORY_REAPER_DRY_RUN'
    value: string(reaperDryRun)
  }
  {
    name: 'IMAGE_FACTORY_REAPER_MAX_AGE_HOURS'
    value: string(reaperMaxAgeHours)
  }
  // Secrets, from Key Vault.
  {
    name: 'IMAGE_FACTORY_APPROVAL_KEYS'
    value: '@Microsoft.KeyVault(${secret}approval-keys)'
  }
  {
    name: 'IMAGE_FACTORY_GITHUB_SECRET'
    value: '@Microsoft.KeyVault(${secret}github-secret)'
  }
  {
    name: 'IMAGE_FACTORY_OPERATOR_TOKEN'
    value: '@Microsoft.KeyVault(${secret}operator-token)'
  }
]
var appSettings = concat(baseSettings, optionalSecrets)

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: siteName
  location: location
  tags: union(tags, {
    'azd-service-name': 'factory'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    //checkov:skip=CKV_AZURE_17: Callers are GitHub and Azure DevOps webhooks and approvers' browsers, which present no client certificates; webhooks are authenticated by HMAC, approvals by signed links.
    //checkov:skip=CKV_AZURE_222: Webhooks and approval links must be reachable from the internet.
    //checkov:skip=CKV_AZURE_212: Flex Consumption scales out on demand (maximumInstanceCount) and to zero; a minimum instance count would only keep idle instances: builds run in the Container Apps job and Service Bus redelivers any message an instance loses.
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      // Azure's function-app stack data for FC1 lists the Custom Handler
      // stack as runtime `custom`, version `1.0` (docs/deploying-flex.md).
      runtime: {
        name: 'custom'
        version: '1.0'
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      // azd uploads the package here; the app reads it with the identity.
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
    }
    siteConfig: {
      //checkov:skip=CKV_AZURE_213: The custom handler serves function invocations only; the Functions host reports its own health and Service Bus redelivers.
      appSettings: appSettings
      httpLoggingEnabled: true
      detailedErrorLoggingEnabled: true
      requestTracingEnabled: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
  }
}

// App Service authentication with Entra ID in front of the dashboard and the
// runs and rollback API (docs/sign-in.md). Browsers are sent to sign in; the
// command line brings an Entra ID token for api://<client id>. The webhook and
// approval-link paths carry their own signatures (HMAC, signed links) and are
// excluded: GitHub and Azure DevOps cannot sign in, and an approver opens the
// link from an email on any device. Paths are the functions' routes under
// /api (functions/git-push, functions/approval); `/*` covers every path
// below. The token store is on: the platform maps claims only with it.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(signInClientId)) {
  parent: site
  name: 'authsettingsV2'
  //checkov:skip=CKV_AZURE_13: checkov reads only the retired authsettings shape (properties.enabled); this is authsettingsV2, enabled by platform.enabled below.
  //checkov:skip=CKV_AZURE_63: A site setting checkov applies to every sites/config resource; the site itself sets httpLoggingEnabled.
  //checkov:skip=CKV_AZURE_65: A site setting checkov applies to every sites/config resource; the site itself sets detailedErrorLoggingEnabled.
  properties: {
    //checkov:skip=CKV_AZURE_66: A site setting checkov applies to every sites/config resource; the site itself sets requestTracingEnabled.
    //checkov:skip=CKV_AZURE_80: A site setting checkov applies to every sites/config resource; the app is a custom handler, with no .NET Framework.
    //checkov:skip=CKV_AZURE_88: A site setting checkov applies to every sites/config resource; the app keeps no files in Azure Files (its state is in Cosmos DB and Blob Storage).
    platform: {
      enabled: true
    }
    globalValidation: {
      //checkov:skip=CKV_AZURE_222: A site setting checkov applies to every sites/config resource; webhooks and approval links must be reachable from the internet, which is why this resource signs everyone else in.
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: [
        '/api/hooks/*'
        '/api/approvals/*'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: signInClientId
          clientSecretSettingName: 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${signInClientId}'
            signInClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
  }
}

// No basic (publishing password) authentication: azd deploys with Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output url string = publicUrl
