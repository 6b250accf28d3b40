// Assigns a role to a service principal (the factory identity, or the app
// registration packer signs in as) on the resource group this module is
// deployed to.

@description('Role definition resource id.')
param roleDefinitionId string

@description('Object id of the service principal.')
param principalId string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
