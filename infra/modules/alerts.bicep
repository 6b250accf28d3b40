// Alerts on the factory (docs/operations.md, "Alerts"), all to one action
// group that mails `alertEmail`:
// - dead letters: one waiting 15 minutes in a queue's dead-letter
//   sub-queue, which its function `dead-letter-<queue>` fails on (a
//   dead-lettered message that was handled failed its run: the failed-runs
//   alert names it);
// - failed runs and reaper deletions: log alerts over the handler's own
//   telemetry in Application Insights (queries in ../queries/);
// - Patch Tuesday: an image not released since this month's build time
//   `patchReleaseDays` days after it, read from the gallery through Azure
//   Resource Graph (a log alert can look back two days at most, so the
//   runs' logs cannot tell). That rule has an identity of its own, which
//   reads the workspace here and the gallery's group (main.bicep).

@description('Name prefix.')
param name string

@description('Azure region of the log alerts.')
param location string

@description('Tags for every resource.')
param tags object

@description('Where alerts are mailed. Empty: the action group has no receiver (alerts show in the portal only).')
param alertEmail string

@description('Resource id of the Service Bus namespace.')
param serviceBusNamespaceId string

@description('Resource id of the Application Insights component.')
param appInsightsId string

@description('Name of the Log Analytics workspace behind it.')
param workspaceName string

@description('The gallery\'s resource group.')
param galleryResourceGroup string

@description('Days after Patch Tuesday the monthly build runs (as the function app).')
param patchTuesdayOffsetDays int

@description('Hour the monthly build runs (as the function app; taken as UTC here).')
param patchTuesdayHour int

@description('Days after the monthly build time by which every image is released (IMAGE_FACTORY_PATCH_GRACE_DAYS).')
param patchReleaseDays int

var queueNamespace = 'Microsoft.ServiceBus/namespaces'

resource actions 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${name}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'imgf'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Each queue's dead letters wait in its dead-letter sub-queue until the
// function `dead-letter-<queue>` fails their run and completes them, within
// seconds. One there for 15 minutes (its minimum count above 0) is one that
// function fails on, so its run may still show running.
resource waiting 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-${name}-dead-letters-waiting'
  location: 'global'
  tags: tags
  properties: {
    description: 'A dead letter has waited 15 minutes in a sub-queue: its dead-letter function fails on it (docs/operations.md#dead-letters).'
    severity: 1
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-letters-waiting'
          metricNamespace: queueNamespace
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Minimum'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actions.id
      }
    ]
  }
}

resource failedRuns 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${name}-failed-runs'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'image-factory: a run failed'
    description: 'A run failed: the run, its stage and the reason (docs/operations.md#alerts).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: loadTextContent('../queries/failed-runs.kql')
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'run'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actions.id
      ]
    }
  }
}

resource reaped 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${name}-reaper-deletions'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'image-factory: the reaper deleted or failed to delete leftovers'
    description: 'The reaper deleted what an ended run left behind, or failed to (docs/operations.md#alerts).'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: loadTextContent('../queries/reaper-deletions.kql')
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'outcome'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actions.id
      ]
    }
  }
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

var patchQuery = format('let graceDays = {0};\nlet offsetDays = {1};\nlet buildHour = {2};\nlet galleryGroup = "{3}";\n{4}', patchReleaseDays, patchTuesdayOffsetDays, patchTuesdayHour, galleryResourceGroup, loadTextContent('../queries/patch-tuesday-unreleased.kql'))

resource unreleased 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${name}-patch-tuesday-unreleased'
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: 'image-factory: an image is not released since Patch Tuesday'
    description: 'An image has no release since this month\'s Patch Tuesday build time, the release days after it (docs/operations.md#alerts).'
    severity: 2
    enabled: true
    scopes: [
      workspace.id
    ]
    evaluationFrequency: 'PT6H'
    windowSize: 'PT6H'
    autoMitigate: false
    muteActionsDuration: 'P1D'
    criteria: {
      allOf: [
        {
          query: patchQuery
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'image'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actions.id
      ]
    }
  }
}

// Reader on the workspace the rule is scoped to (the gallery's group is
// granted in main.bicep, at that group's scope).
var reader = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'acdd72a7-3385-48ef-bd42-f606fba81ae7')

resource unreleasedReadsWorkspace 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, unreleased.id, reader)
  scope: workspace
  properties: {
    roleDefinitionId: reader
    principalId: unreleased.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

output actionGroupId string = actions.id
// The Patch Tuesday rule's identity: Reader on the gallery's group.
output patchTuesdayPrincipalId string = unreleased.identity.principalId
