// Assigns a role to the factory identity on the resource group this module
// is deployed to.

@description('Role definition resource id.')
param roleDefinitionId string

@description('Principal id of the factory identity.')
param principalId string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
