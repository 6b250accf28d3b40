#!/usr/bin/env sh
# azd postprovision hook: creates the factory's required secrets in Key Vault
# when they do not exist yet (approval signing key, GitHub webhook secret,
# operator token), with random values that are never printed. Existing
# secrets are left alone; rotate them as the README says.
set -eu
vault="${AZURE_KEY_VAULT_NAME:?AZURE_KEY_VAULT_NAME is not set (an output of infra/main.bicep)}"

ensure() {
  name="$1"
  value="$2"
  if az keyvault secret show --vault-name "$vault" --name "$name" --query id -o tsv >/dev/null 2>&1; then
    echo "postprovision: secret $name exists; left as it is"
  else
    az keyvault secret set --vault-name "$vault" --name "$name" --value "$value" --output none
    echo "postprovision: secret $name created"
  fi
}

ensure approval-keys "k$(date +%Y%m):$(openssl rand -base64 32)"
ensure github-secret "$(openssl rand -hex 32)"
ensure operator-token "$(openssl rand -hex 32)"

# packer on the build worker signs in as an app registration that trusts the
# factory identity (docs/packer-sign-in.md); without it, Windows builds cannot
# reach Azure.
if [ -z "${PACKER_CLIENT_ID:-}" ]; then
  echo "postprovision: PACKER_CLIENT_ID is not set: packer on the build worker has no Azure sign-in; create the app registration (deploy/entra/packer-app.bicep, see docs/packer-sign-in.md), then azd env set PACKER_CLIENT_ID and PACKER_PRINCIPAL_ID and azd provision again"
fi
