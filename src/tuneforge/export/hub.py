"""Upload an export folder to the Hugging Face hub. The token comes from the environment (HF_TOKEN) or
`hf auth login`'s own store, through huggingface_hub; tuneforge never writes or prints it."""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import TuneforgeError


def require_token(repo_id: str) -> str:
    """The hub token, checked before an export starts so a missing login costs no work."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise TuneforgeError(
            f"--push-to-hub {repo_id}: not logged in to the hub. Set HF_TOKEN (a write token) or run "
            "`hf auth login`, then export again."
        )
    return token


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """Create the repo if needed and upload the folder; returns the repo's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=require_token(repo_id))
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model")
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        reason = (
            "the token is invalid or cannot write to it" if status in (401, 403) else str(exc).splitlines()[0]
        )
        raise TuneforgeError(
            f"--push-to-hub {repo_id}: the hub refused ({reason}); the export is saved in {folder}"
        ) from exc
    except Exception as exc:  # the HTTP client's own connection errors (offline, proxy, DNS) share no base
        raise TuneforgeError(
            f"--push-to-hub {repo_id}: could not reach the hub ({type(exc).__name__}: {exc}); the export is saved "
            f"in {folder}. Push it later with `hf upload {repo_id} {folder}`."
        ) from exc
    return str(url)
