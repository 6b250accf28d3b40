// The release events' Event Grid custom topic (CloudEvents 1.0 input, Entra
// ID only: local, key-based publishing is off) and the factory identity's
// `EventGrid Data Sender` role on it, nothing wider. Subscriptions (a
// deployment pipeline, a scale set updater) are the consumers' own; see
// docs/release-events.md.

@description('Topic name.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Principal id of the factory identity.')
param principalId string

// EventGrid Data Sender (built-in): publish events to the topic.
var dataSenderRole = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  // Its own identity, for subscriptions that deliver with it (Service Bus,
  // Storage queues, Event Hubs destinations).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    //checkov:skip=CKV_AZURE_193: The function app, without VNet integration, publishes over the topic's public endpoint; local (key) auth is off, publishing needs the EventGrid Data Sender role.
    publicNetworkAccess: 'Enabled'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, dataSenderRole)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSenderRole)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('The topic endpoint (IMAGE_FACTORY_EVENT_GRID_ENDPOINT).')
output endpoint string = topic.properties.endpoint
