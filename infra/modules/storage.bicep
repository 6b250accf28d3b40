// The function host's storage account (AzureWebJobsStorage: timer leases,
// host keys) and the Flex Consumption deployment container the package is
// uploaded to. Identity-based only: shared key access is off, so no
// connection string exists to leak. Flex Consumption uses no Azure Files
// content share (that share needs a key; see docs/deploying-flex.md).

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Principal id of the factory identity.')
param principalId string

@description('The blob container the function app\'s deployment package goes to.')
param deploymentContainerName string = 'app-package'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_43: The name is a parameter (3-24 characters, enforced above); main.bicep passes 'stimgf' and the 13-character uniqueString token, all lowercase letters and digits. checkov guesses a parameter's value across modules and its verdict changed between runs on the same files.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    //checkov:skip=CKV_AZURE_206: The host's storage holds only leases, keys and the deployment package, all recreated by a deployment; zone redundancy would double the cost for nothing to recover.
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    //checkov:skip=CKV_AZURE_59: The Functions host on a Dedicated plan without VNet integration reaches its storage over the public endpoint; access is by Entra ID role only (shared keys are off).
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      //checkov:skip=CKV_AZURE_35: The Functions host on a Dedicated plan without VNet integration reaches its storage over the public endpoint; access is by Entra ID role only (shared keys are off).
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
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
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

// The Flex Consumption deployment container: azd uploads the zip here and
// the app reads it with the factory identity (Blob Data Owner below).
resource deployment 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {}
}

// Storage Blob Data Owner: the host's identity-based AzureWebJobsStorage
// (timer schedule monitor, leases, keys) needs it on the account.
var blobDataOwner = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, blobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: blobDataOwner
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deployment.name}'
