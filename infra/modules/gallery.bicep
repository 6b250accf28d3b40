// Azure Compute Gallery and the image definitions the factory publishes to.
// One definition per image folder that targets the gallery, named as its
// image.toml's `gallery_image_name` (packer publishes there, the release
// stage promotes there; tests/infra.rs checks the names agree); here the
// seed's Windows Server 2022 image, images/base-w2022-datacenter.

@description('Gallery name (letters, digits, dots and underscores).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

resource gallery 'Microsoft.Compute/galleries@2023-07-03' = {
  name: name
  location: location
  tags: tags
  properties: {
    description: 'Golden images built, tested and approved by image-factory'
  }
}

resource w2022 'Microsoft.Compute/galleries/images@2023-07-03' = {
  parent: gallery
  name: 'windows-web-base'
  location: location
  tags: tags
  properties: {
    description: 'Windows Server 2022 Datacenter base image (IIS, language pack, Defender, firewall baseline)'
    osType: 'Windows'
    osState: 'Generalized'
    hyperVGeneration: 'V2'
    identifier: {
      publisher: 'ImageFactory'
      offer: 'WindowsServer'
      sku: '2022-datacenter-base'
    }
    recommended: {
      vCPUs: {
        min: 2
        max: 16
      }
      memory: {
        min: 4
        max: 64
      }
    }
  }
}

output id string = gallery.id
output name string = gallery.name
output imageDefinitions array = [
  w2022.name
]
