// The app registration packer signs in as on the build worker, with the
// factory's user-assigned managed identity as its federated credential:
// the worker asks its identity endpoint for a token for
// api://AzureADTokenExchange and packer presents it as this app's client
// assertion (client_jwt). No secret exists to store or rotate.
//
// It is a Microsoft Graph object, not an Azure resource, so it is deployed
// apart from infra/main.bicep with the Microsoft Graph Bicep extension (see
// bicepconfig.json next to this file), by someone allowed to create app
// registrations (Application.ReadWrite.All, or Application Developer).
// See docs/packer-sign-in.md for the commands and the manual alternative.

extension microsoftGraphV1

@description('Object (principal) id of the factory identity: azd output FACTORY_IDENTITY_PRINCIPAL_ID.')
param factoryIdentityPrincipalId string

@description('Unique name of the app registration in the tenant (the extension finds it again by this name).')
param uniqueName string = 'image-factory-packer'

@description('Display name of the app registration.')
param displayName string = 'image-factory packer (build worker)'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'

  // A managed identity as the federated credential: issuer is the tenant's
  // Entra ID v2.0 endpoint, subject the identity's object id, audience the
  // token exchange audience.
  resource workerIdentity 'federatedIdentityCredentials@v1.0' = {
    name: '${uniqueName}/factory-build-job'
    description: 'The image factory build job\'s user-assigned managed identity'
    issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    subject: factoryIdentityPrincipalId
    audiences: [
      'api://AzureADTokenExchange'
    ]
  }
}

resource principal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

@description('PACKER_CLIENT_ID for azd (infra/main.parameters.json).')
output packerClientId string = app.appId

@description('PACKER_PRINCIPAL_ID for azd: gets the builder role.')
output packerPrincipalId string = principal.id
