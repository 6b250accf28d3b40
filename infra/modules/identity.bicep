// The factory's one user-assigned managed identity: the function app and the
// Container Apps build job run as it; packer signs in as an app registration
// that trusts it (deploy/entra/packer-app.bicep). Every permission it has is
// granted to it explicitly in the other modules.

@description('Name of the identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
output name string = identity.name
