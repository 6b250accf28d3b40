// The Container Apps environment and the build job: long packer builds run
// here, off the Functions host. Manual trigger (the factory starts one
// execution per build), the image from a parameter, the factory identity.

@description('Name prefix.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Log Analytics workspace (name) for the environment logs.')
param workspaceName string

@description('Resource id of the factory identity.')
param identityId string

@description('Client id of the factory identity.')
param identityClientId string

@description('Container image of the build worker (packer and the image-factory binary).')
param image string

@description('Fully qualified Service Bus namespace the worker reports to.')
param serviceBusNamespace string

@description('Key Vault secret URI of the send-only Service Bus connection string.')
param sendConnectionSecretUri string

@description('Maximum run time of one build, in seconds.')
param replicaTimeout int = 14400

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: 'cae-${name}'
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
  }
}

resource job 'Microsoft.App/jobs@2024-03-01' = {
  name: 'caj-${name}-build'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    environmentId: environment.id
    configuration: {
      triggerType: 'Manual'
      replicaTimeout: replicaTimeout
      replicaRetryLimit: 0
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      secrets: [
        {
          name: 'servicebus-send'
          keyVaultUrl: sendConnectionSecretUri
          identity: identityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'worker'
          image: image
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          env: [
            {
              name: 'AZURE_CLIENT_ID'
              value: identityClientId
            }
            {
              name: 'SERVICEBUS_NAMESPACE'
              value: serviceBusNamespace
            }
            {
              name: 'SERVICEBUS_SEND_CONNECTION'
              secretRef: 'servicebus-send'
            }
          ]
        }
      ]
    }
  }
}

output environmentName string = environment.name
output jobName string = job.name
output jobId string = job.id
