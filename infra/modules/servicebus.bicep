// Service Bus: one queue per stage and the worker-completion queue, read
// from ../queues.json (the same file the `image-factory package` check
// reads). Each queue's dead-letter sub-queue has a function of its own
// (`dead-letter-<queue>`), which fails the run with the reason: nothing is
// forwarded, so the Basic tier serves (queues, scheduled messages, dead
// letters, SAS rules; no topics, sessions, duplicate detection, transactions
// or auto-forwarding, none of which the factory uses). See docs/costs.md.

@description('Namespace name.')
param name string

@description('Tier: Basic serves the factory (docs/costs.md); Standard for an estate that needs more than 100 brokered connections or wants topics later.')
@allowed([
  'Basic'
  'Standard'
])
param sku string = 'Basic'

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Principal id of the factory identity.')
param principalId string

@description('Key Vault that receives the send-only connection string.')
param keyVaultName string

@description('Expiry of the send-only connection string secret (seconds since the epoch).')
param secretExpiry int

var config = loadJsonContent('../queues.json')

// SAS stays on for one rule only (workers-send, below): the Service Bus crate
// the build workers use speaks SAS only. The function app itself connects with
// its managed identity.
resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    disableLocalAuth: false
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [
  for queue in config.queues: {
    parent: namespace
    name: queue
    properties: {
      maxDeliveryCount: config.maxDeliveryCount
      lockDuration: config.lockDuration
      deadLetteringOnMessageExpiration: true
    }
  }
]

// Send-only rule for the build workers (Container Apps job): they post to
// `build-completed` and can neither read nor manage anything.
resource workersSend 'Microsoft.ServiceBus/namespaces/authorizationRules@2022-10-01-preview' = {
  parent: namespace
  name: 'workers-send'
  properties: {
    rights: [
      'Send'
    ]
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource sendSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'servicebus-send-connection'
  properties: {
    contentType: 'Service Bus connection string (Send only)'
    value: workersSend.listKeys().primaryConnectionString
    attributes: {
      enabled: true
      exp: secretExpiry
    }
  }
}

// Azure Service Bus Data Receiver and Data Sender on the namespace: the
// function app's triggers receive, its output bindings send.
var dataReceiver = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
var dataSender = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, dataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: dataReceiver
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, dataSender)
  scope: namespace
  properties: {
    roleDefinitionId: dataSender
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output sendSecretName string = sendSecret.name
