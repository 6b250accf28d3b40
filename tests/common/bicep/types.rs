//! Bicep's own type data for Azure resources (the `bicep-types-az` project's
//! generated `types.json` files): every file read once, each resource type
//! found by its name `Type@api-version` (compared without case, as Bicep
//! compares resource types), whatever folder holds it.
//!
//! A `types.json` is a JSON array of typed nodes that point at each other
//! with `{"$ref": "#/<index>"}`. Property flags are Bicep's
//! `ObjectTypePropertyFlags`; scopes are its `ScopeType` bits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A property must be given.
pub const REQUIRED: u32 = 1;
/// A property Azure sets; a template cannot.
pub const READ_ONLY: u32 = 2;

/// `ScopeType` bits of a resource type's readable and writable scopes.
pub const SCOPE_TENANT: u32 = 1;
pub const SCOPE_MANAGEMENT_GROUP: u32 = 2;
pub const SCOPE_SUBSCRIPTION: u32 = 4;
pub const SCOPE_RESOURCE_GROUP: u32 = 8;
pub const SCOPE_EXTENSION: u32 = 16;

/// A reference to another node of the same file.
#[derive(Debug, Clone, Deserialize)]
pub struct Ref {
    #[serde(rename = "$ref")]
    target: String,
}

/// One property of an object type.
#[derive(Debug, Clone, Deserialize)]
pub struct Property {
    #[serde(rename = "type")]
    pub ty: Ref,
    #[serde(default)]
    pub flags: u32,
}

impl Property {
    /// The property must be written (and Azure does not set it itself).
    pub fn required(&self) -> bool {
        self.flags & REQUIRED != 0 && self.flags & READ_ONLY == 0
    }

    /// Azure sets the property; a template cannot.
    pub fn read_only(&self) -> bool {
        self.flags & READ_ONLY != 0
    }
}

/// One node of a `types.json`, named as its `$type`.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Deserialize)]
#[serde(tag = "$type")]
pub enum Node {
    StringType {
        #[serde(rename = "minLength")]
        min_length: Option<u64>,
        #[serde(rename = "maxLength")]
        max_length: Option<u64>,
    },
    StringLiteralType {
        value: String,
    },
    IntegerType {
        #[serde(rename = "minValue")]
        min_value: Option<i64>,
        #[serde(rename = "maxValue")]
        max_value: Option<i64>,
    },
    BooleanType,
    AnyType,
    NullType,
    ArrayType {
        #[serde(rename = "itemType")]
        item: Ref,
        #[serde(rename = "minLength")]
        min_length: Option<u64>,
        #[serde(rename = "maxLength")]
        max_length: Option<u64>,
    },
    ObjectType {
        name: String,
        #[serde(default)]
        properties: BTreeMap<String, Property>,
        #[serde(rename = "additionalProperties")]
        additional: Option<Ref>,
    },
    DiscriminatedObjectType {
        name: String,
        discriminator: String,
        #[serde(rename = "baseProperties", default)]
        base: BTreeMap<String, Property>,
        elements: BTreeMap<String, Ref>,
    },
    UnionType {
        elements: Vec<Ref>,
    },
    ResourceType {
        name: String,
        body: Ref,
        #[serde(rename = "readableScopes", default)]
        readable: u32,
        #[serde(rename = "writableScopes", default)]
        writable: u32,
    },
    /// `listKeys()` and the like: not part of a resource's body.
    ResourceFunctionType,
}

/// A type: a node of one file.
#[derive(Clone, Copy)]
pub struct Type<'a> {
    file: &'a TypeFile,
    index: usize,
}

impl<'a> Type<'a> {
    /// The node itself.
    pub fn node(&self) -> &'a Node {
        &self.file.nodes[self.index]
    }

    /// The node a reference of this file points at.
    pub fn follow(&self, reference: &Ref) -> Type<'a> {
        self.file.resolve(reference)
    }
}

/// One `types.json`.
struct TypeFile {
    path: PathBuf,
    nodes: Vec<Node>,
}

impl TypeFile {
    fn resolve(&self, reference: &Ref) -> Type<'_> {
        let index = reference
            .target
            .strip_prefix("#/")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < self.nodes.len())
            .unwrap_or_else(|| {
                panic!(
                    "{}: reference {:?} is not an index into the same file",
                    self.path.display(),
                    reference.target
                )
            });
        Type { file: self, index }
    }
}

/// A resource type at one api-version, as the type data declares it.
pub struct ResourceType<'a> {
    /// The body a declaration writes (an object, or objects told apart by a discriminator).
    pub body: Type<'a>,
    /// Scopes the type can be read (`existing`) at.
    pub readable: u32,
    /// Scopes the type can be deployed at (0: read-only, `existing` only).
    pub writable: u32,
    /// The `types.json` that declares it, relative to the data's root.
    pub source: String,
}

/// Why a `type@api-version` has no definition.
#[derive(Debug, PartialEq)]
pub enum LookupError {
    /// No api-version of the type is in the data.
    UnknownType,
    /// The type exists, at these other api-versions.
    UnknownApiVersion(Vec<String>),
}

/// Every `types.json` under a root, indexed by resource type name.
pub struct TypeLibrary {
    root: PathBuf,
    files: Vec<TypeFile>,
    /// `type@version` (lower case) to (file, node).
    resources: HashMap<String, (usize, usize)>,
    /// Type (lower case) to its api-versions.
    versions: HashMap<String, BTreeSet<String>>,
}

impl TypeLibrary {
    /// Reads every `types.json` under `root` (the data's `generated/` folder).
    pub fn open(root: &Path) -> TypeLibrary {
        let mut paths = Vec::new();
        collect_type_files(root, &mut paths);
        paths.sort();
        assert!(
            !paths.is_empty(),
            "no types.json under {}: the Bicep type data is missing",
            root.display()
        );
        let mut library = TypeLibrary {
            root: root.to_path_buf(),
            files: Vec::new(),
            resources: HashMap::new(),
            versions: HashMap::new(),
        };
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let nodes: Vec<Node> = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not Bicep type data: {e}", path.display()));
            let file = library.files.len();
            for (index, node) in nodes.iter().enumerate() {
                if let Node::ResourceType { name, .. } = node {
                    let key = name.to_ascii_lowercase();
                    if let Some((ty, version)) = key.split_once('@') {
                        library
                            .versions
                            .entry(ty.to_string())
                            .or_default()
                            .insert(version.to_string());
                    }
                    if let Some((other, _)) = library.resources.insert(key, (file, index)) {
                        let other = if other == file {
                            &path
                        } else {
                            &library.files[other].path
                        };
                        panic!(
                            "{name} is defined twice, in {} and {}: which one Bicep uses is not known",
                            other.display(),
                            path.display()
                        );
                    }
                }
            }
            library.files.push(TypeFile { path, nodes });
        }
        library
    }

    /// How many `types.json` files were read.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The definition of `resource_type` (`Microsoft.X/y/z`) at `api_version`.
    pub fn resource(
        &self,
        resource_type: &str,
        api_version: &str,
    ) -> Result<ResourceType<'_>, LookupError> {
        let key = format!("{resource_type}@{api_version}").to_ascii_lowercase();
        let Some(&(file, index)) = self.resources.get(&key) else {
            return Err(
                match self.versions.get(&resource_type.to_ascii_lowercase()) {
                    Some(known) => LookupError::UnknownApiVersion(known.iter().cloned().collect()),
                    None => LookupError::UnknownType,
                },
            );
        };
        let type_file = &self.files[file];
        let Node::ResourceType {
            body,
            readable,
            writable,
            ..
        } = &type_file.nodes[index]
        else {
            unreachable!("indexed only resource types")
        };
        let source = type_file
            .path
            .strip_prefix(&self.root)
            .unwrap_or(&type_file.path)
            .display()
            .to_string();
        Ok(ResourceType {
            body: type_file.resolve(body),
            readable: *readable,
            writable: *writable,
            source,
        })
    }
}

fn collect_type_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_type_files(&path, out);
        } else if path.file_name().is_some_and(|n| n == "types.json") {
            out.push(path);
        }
    }
}

/// The names of scope bits, for messages.
pub fn scope_names(scopes: u32) -> String {
    let names: Vec<&str> = [
        (SCOPE_TENANT, "tenant"),
        (SCOPE_MANAGEMENT_GROUP, "management group"),
        (SCOPE_SUBSCRIPTION, "subscription"),
        (SCOPE_RESOURCE_GROUP, "resource group"),
        (SCOPE_EXTENSION, "another resource (extension)"),
    ]
    .iter()
    .filter(|(bit, _)| scopes & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
