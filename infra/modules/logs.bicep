// The build logs and the runs' sources: a storage account of their own with
// two private containers: `build-logs`, the worker uploads each build's log
// to (Put Block and Put Block List with its managed identity) and the
// function app links to; `sources`, the function app writes each run's
// source snapshot to (`<sha256>.tar`) and the worker downloads it from.
//
// Why not a container in the host's storage account: that account is the
// Functions host's (leases, host keys, the deployment package) and the
// identity holds Storage Blob Data Owner on all of it, which the host needs;
// logs have another life (kept for months for audit, deleted by a lifecycle
// rule) and are written by the build worker, whose only need is to write
// blobs in one container. A separate account keeps the two apart and lets
// the logs' own role be scoped to the container.
//
// No keys: shared key access is off (so no SAS either); access is by Entra
// ID role only.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Principal id of the factory identity (the worker and the function app).')
param principalId string

@description('Days a build log is kept before the lifecycle rule deletes it.')
@minValue(1)
param retentionDays int = 365

var containerName = 'build-logs'
var sourcesName = 'sources'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_43: The name is a parameter (3-24 characters, enforced above); main.bicep passes 'stimgflog' and at most 15 characters of the uniqueString token, all lowercase letters and digits. checkov guesses a parameter's value across modules and its verdict changed between runs on the same files.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    //checkov:skip=CKV_AZURE_206: Build logs are evidence, not the image: a lost log is regrettable but the gallery version and the run record remain; zone redundancy would double the cost.
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    //checkov:skip=CKV_AZURE_59: The build job runs in a Container Apps environment without VNet integration and reaches storage over the public endpoint; access is by Entra ID role only (shared keys are off).
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      //checkov:skip=CKV_AZURE_35: The build job runs in a Container Apps environment without VNet integration and reaches storage over the public endpoint; access is by Entra ID role only (shared keys are off).
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
      }
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

// The runs' source snapshots, each stored once under its SHA-256; the
// factory's sweeper removes those no run or release needs any more
// (docs/sources.md), so no lifecycle rule deletes them.
resource sources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: sourcesName
  properties: {
    publicAccess: 'None'
  }
}

// Old logs go away on their own.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-build-logs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// Storage Blob Data Contributor on the container only: the worker writes
// (Put Block, Put Block List) and the function app reads; nothing else in
// the account, no role management.
var blobDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')

resource logWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, blobDataContributor)
  scope: container
  properties: {
    roleDefinitionId: blobDataContributor
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Blob Data Contributor on the sources container only: the function
// app writes and prunes snapshots, the worker reads them (it runs as the
// same identity; see docs/sources.md).
resource sourcesWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sources.id, principalId, blobDataContributor)
  scope: sources
  properties: {
    roleDefinitionId: blobDataContributor
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
// https://<account>.blob.core.windows.net/build-logs, no SAS (IMAGE_FACTORY_BUILD_LOGS_URL).
output containerUrl string = '${storage.properties.primaryEndpoints.blob}${containerName}'
// https://<account>.blob.core.windows.net/sources, no SAS (IMAGE_FACTORY_SOURCES_URL).
output sourcesUrl string = '${storage.properties.primaryEndpoints.blob}${sourcesName}'
