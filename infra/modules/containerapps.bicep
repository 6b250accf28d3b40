// The Container Apps environment and the build job: long packer builds run
// here, off the Functions host. Manual trigger (the factory starts one
// execution per build, adding IMAGE_FACTORY_BUILD_ORDER to the environment of
// the container named `worker`), the image from a parameter
// (deploy/worker/Dockerfile), the factory identity.
//
// The container runs `image-factory worker`: it downloads the run's source
// snapshot from the sources container and checks its SHA-256 (the image
// holds no images), builds with packer, uploads the log to the logs
// container with its identity and reports on the `build-completed` queue
// with the send-only connection string of the `workers-send` rule (from Key
// Vault through the job's secret reference).
// Every IMAGE_FACTORY_* name below is one the worker reads
// (tests/worker_image.rs checks it).
//
// packer signs in as an app registration that trusts this job's identity as
// a federated credential (IMAGE_FACTORY_PACKER_CLIENT_ID): packer's Azure
// plugin reaches a managed identity only through the VM metadata endpoint,
// which Container Apps does not serve (hashicorp/packer-plugin-azure#411).
// Per build, the worker asks its identity endpoint for a token for
// api://AzureADTokenExchange and gives it to packer as that app's client
// assertion. See docs/packer-sign-in.md.
//
// The environment is integrated into the factory's build network
// (network.bicep): a workload-profiles environment on the network's
// `environment` subnet, so that packer reaches the build VM's private address
// over WinRM. Integration is fixed when the environment is created: an
// environment deployed before it must be deleted (with the job) before the
// next `azd provision` (docs/deploying.md#the-build-network).

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

@description('Login server of the private registry holding the image (e.g. myregistry.azurecr.io), pulled with the factory identity (grant it AcrPull there); empty: a public image.')
param registryServer string = ''

@description('The source snapshots\' container (https://<account>.blob.core.windows.net/sources), read with the job\'s identity.')
param sourcesUrl string

@description('Key Vault secret URI of the send-only Service Bus connection string.')
param sendConnectionSecretUri string

@description('Application Insights connection string (the worker\'s telemetry, Entra ID auth).')
param appInsightsConnectionString string

@description('Client id of the app registration packer signs in as; it trusts the factory identity as a federated credential (deploy/entra/packer-app.bicep). Empty: packer has no Azure sign-in on the worker.')
param packerClientId string = ''

@description('The existing resource group packer builds in.')
param buildResourceGroup string

@description('The gallery\'s resource group.')
param galleryResourceGroup string

@description('The gallery packer publishes versions to.')
param galleryName string

@description('Resource id of the environment\'s subnet (delegated to Microsoft.App/environments, at least a /27).')
param environmentSubnetId string

@description('How packer builds: private (the build VM in the build subnet, no public IP) or public-trial (packer makes a temporary network with a public IP; trials only).')
@allowed([
  'private'
  'public-trial'
])
param buildNetwork string = 'private'

@description('The build network (its name, its build VMs\' subnet, its resource group), passed to packer.')
param virtualNetworkName string

@description('The build VMs\' subnet of virtualNetworkName.')
param vmSubnetName string

@description('The build network\'s resource group.')
param networkResourceGroup string

@description('Maximum run time of one execution, in seconds: at least the longest build timeout ([packer] timeout_minutes) of any image, so that the factory\'s own timeout and watchdog act first.')
@minValue(3600)
param replicaTimeout int = 14400

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: 'cae-${name}'
  location: location
  tags: tags
  properties: {
    // Workload profiles with the Consumption profile only: the job's
    // replicas share the subnet's addresses (about one per ten replicas).
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    vnetConfiguration: {
      infrastructureSubnetId: environmentSubnetId
      // No app of the environment takes requests from outside the network.
      internal: true
    }
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
    workloadProfileName: 'Consumption'
    configuration: {
      triggerType: 'Manual'
      replicaTimeout: replicaTimeout
      // No platform retry: a retried replica would run a second packer build
      // of the same order. The factory's watchdog (the sweeper timer) sees a
      // failed or lost execution and retries the stage itself, at most as
      // often as the run's policy allows.
      replicaRetryLimit: 0
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: identityId
        }
      ]
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
          // The factory looks this container up by name to add the order.
          name: 'worker'
          image: image
          command: [
            'image-factory'
            'worker'
          ]
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          env: [
            // The worker: its identity (snapshot download, log upload), its
            // sources, its report channel, its scratch folder.
            {
              name: 'AZURE_CLIENT_ID'
              value: identityClientId
            }
            {
              name: 'IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION'
              secretRef: 'servicebus-send'
            }
            {
              name: 'IMAGE_FACTORY_SOURCES_URL'
              value: sourcesUrl
            }
            {
              name: 'IMAGE_FACTORY_DATA'
              value: '/tmp/image-factory'
            }
            {
              name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
              value: appInsightsConnectionString
            }
            {
              name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
              value: 'ClientId=${identityClientId};Authorization=AAD'
            }
            // The Azure sign-in of packer (see the top of this file): the
            // worker gives packer ARM_CLIENT_ID (this app registration) and
            // ARM_OIDC_TOKEN (its identity token, the template client_jwt).
            {
              name: 'IMAGE_FACTORY_PACKER_CLIENT_ID'
              value: packerClientId
            }
            {
              name: 'ARM_SUBSCRIPTION_ID'
              value: subscription().subscriptionId
            }
            {
              name: 'ARM_TENANT_ID'
              value: tenant().tenantId
            }
            // The Windows template's settings (packer reads PKR_VAR_<name> for
            // variable <name>; templates that do not declare one ignore it).
            // Build in the existing build group and publish straight to the
            // gallery (a Trusted Launch build has no managed image).
            {
              name: 'PKR_VAR_build_resource_group_name'
              value: buildResourceGroup
            }
            {
              name: 'PKR_VAR_gallery_resource_group_name'
              value: galleryResourceGroup
            }
            {
              name: 'PKR_VAR_gallery_name'
              value: galleryName
            }
            {
              name: 'PKR_VAR_location'
              value: location
            }
            {
              name: 'PKR_VAR_replication_regions'
              value: '["${location}"]'
            }
            // The build network (docs/windows-image.md#the-build-network):
            // the build VM's NIC in the `vms` subnet, no public IP. Ignored
            // by the template in public-trial mode.
            {
              name: 'PKR_VAR_build_network'
              value: buildNetwork
            }
            {
              name: 'PKR_VAR_virtual_network_name'
              value: virtualNetworkName
            }
            {
              name: 'PKR_VAR_virtual_network_subnet_name'
              value: vmSubnetName
            }
            {
              name: 'PKR_VAR_virtual_network_resource_group_name'
              value: networkResourceGroup
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
