//! Azure DevOps git tags, with the real managed identity credential against
//! the managed identity endpoint stand-in (tests/common/identity.rs) and the
//! loopback Azure DevOps of `common::devops`, which keeps refs, answers the
//! refs API as the service does (one result per update, `staleOldObjectId`
//! for a ref that exists, a sign-in page for a token it does not take), and
//! checks every request and answer against Microsoft's published Azure
//! DevOps REST specification (`specification/git/7.1/git.json`, operations
//! `Refs_Update Refs` and `Refs_List`).

mod common;

use common::devops::{DevOps, PROJECT, REPOSITORY};
use common::identity::{self, IdentityEndpoint};
use image_factory::azure::identity::Identity;
use image_factory::domain::git_tag::{TagName, TagOutcome};
use image_factory::domain::run::RepositoryRef;
use image_factory::ports::git::GitTags;
use image_factory::web::azure_devops::AzureDevOpsTags;

const A: &str = "33b55f7cb7e7e245323987634f960cf4a6e6bc74";
const B: &str = "44b55f7cb7e7e245323987634f960cf4a6e6bc74";

#[test]
fn the_factorys_identity_tags_azure_devops_commits_and_never_moves_a_tag() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let identity_endpoint = IdentityEndpoint::serve_for_process(&runtime);
    runtime.block_on(async {
        let devops = DevOps::new(&identity::token_for("499b84ac-1321-427f-aa17-267ca6975798"));
        devops.state().commits = [A, B].map(String::from).into();
        let base = devops.serve().await;
        let credential = Identity::Managed {
            client_id: Some(identity::CLIENT_ID.to_string()),
        }
        .credential()
        .expect("managed identity credential");
        // The loopback service stands for an Azure DevOps Server the settings name.
        let tags = AzureDevOpsTags::new(credential.clone(), Some(&base)).expect("adapter");
        let repo = RepositoryRef::AzureDevOps {
            organization_url: format!("{base}/fabrikam"),
            project: PROJECT.into(),
            repository_id: REPOSITORY.into(),
        };
        let name = TagName::new("example", &"1.2.3").expect("tag");

        assert_eq!(
            tags.tag(Some(&repo), &name, A).await,
            Ok(TagOutcome::Tagged)
        );
        assert_eq!(devops.state().refs["refs/tags/example/1.2.3"], A);
        assert_eq!(
            tags.tag(Some(&repo), &name, A).await,
            Ok(TagOutcome::AlreadyThere)
        );
        assert_eq!(
            tags.tag(Some(&repo), &name, B).await,
            Ok(TagOutcome::Conflict { existing: A.into() })
        );
        assert_eq!(
            devops.state().refs["refs/tags/example/1.2.3"],
            A,
            "never moved"
        );

        // The identity lacks Create tag: permanent, naming the permission.
        devops.state().denied = true;
        let other = TagName::new("example", &"1.2.4").expect("tag");
        let err = tags.tag(Some(&repo), &other, A).await.expect_err("denied");
        assert!(
            !err.transient && err.message.contains("Create tag"),
            "{err:?}"
        );
        devops.state().denied = false;

        // A commit the repository does not have: permanent.
        let unknown = "5555555555555555555555555555555555555555";
        let err = tags
            .tag(Some(&repo), &other, unknown)
            .await
            .expect_err("unknown");
        assert!(
            !err.transient && err.message.contains("unresolvableToCommit"),
            "{err:?}"
        );

        // The service down: transient.
        devops.state().failures = vec![503];
        let err = tags.tag(Some(&repo), &other, A).await.expect_err("503");
        assert!(err.transient, "{err:?}");
        assert_eq!(
            tags.tag(Some(&repo), &other, A).await,
            Ok(TagOutcome::Tagged)
        );

        // An identity the organization does not know: a sign-in page, permanent.
        let taken = std::mem::replace(
            &mut *devops.token.lock().expect("lock"),
            "another identity's token".into(),
        );
        let err = tags.tag(Some(&repo), &other, A).await.expect_err("203");
        assert!(!err.transient && err.message.contains("203"), "{err:?}");
        assert!(
            err.message.contains("add the identity to the organization"),
            "{err:?}"
        );
        *devops.token.lock().expect("lock") = taken;

        // An organization outside Azure DevOps' hosts never sees the token.
        let cloud_only = AzureDevOpsTags::new(credential, None).expect("adapter");
        let requests_before = devops.state().tokens.len();
        let err = cloud_only
            .tag(Some(&repo), &other, A)
            .await
            .expect_err("untrusted");
        assert!(
            !err.transient && err.message.contains("not sent there"),
            "{err:?}"
        );
        assert_eq!(devops.state().tokens.len(), requests_before);

        // Every token the fake saw was the identity's token for Azure DevOps.
        let state = devops.state();
        let token = devops.token.lock().expect("lock").clone();
        assert!(
            state.tokens.iter().all(|t| *t == token),
            "{:?}",
            state.tokens
        );
        assert!(
            identity_endpoint
                .requests()
                .iter()
                .all(|r| r.resource == "499b84ac-1321-427f-aa17-267ca6975798"),
            "{:?}",
            identity_endpoint
                .requests()
                .iter()
                .map(|r| &r.resource)
                .collect::<Vec<_>>()
        );
        assert!(state.operations.contains(&"Refs_List".to_string()));
        assert!(state.violations.is_empty(), "{:#?}", state.violations);
    });
}
