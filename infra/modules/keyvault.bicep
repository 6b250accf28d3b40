// Key Vault in RBAC mode for the factory's secrets: webhook secrets, the
// approval signing keys, the operator token, the Teams webhook URL and the
// send-only Service Bus connection string. The factory identity may only read
// secrets (Key Vault Secrets User); operators set them (see README).

@description('Vault name (3-24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Principal id of the factory identity.')
param principalId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    //checkov:skip=CKV_AZURE_189: App Service resolves Key Vault references over the public endpoint when the app has no VNet integration; access is by Entra ID role only.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      //checkov:skip=CKV_AZURE_109: Key Vault references from a function app without VNet integration come from App Service's shared outbound addresses, which are not a trusted service; a deny-by-default firewall would block them.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Key Vault Secrets User: read secret values, nothing else.
var secretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, secretsUser)
  scope: vault
  properties: {
    roleDefinitionId: secretsUser
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
