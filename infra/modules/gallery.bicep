// Azure Compute Gallery the factory publishes to. No image definition is
// made here: the factory creates each image's definition from its
// image.toml (`gallery_image_name`, `[gallery]`) before the image's build,
// so a push of a new image folder is enough (docs/adding-an-image.md).

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

output id string = gallery.id
output name string = gallery.name
