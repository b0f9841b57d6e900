"""The public API is what SPEC section 2 names, and ``__all__`` is complete (httpx-style check)."""

import inspect

import securehub


def test_all_names_resolve() -> None:
    for name in securehub.__all__:
        assert getattr(securehub, name) is not None, name


def test_spec_section_2_names_exported() -> None:
    required = {
        "load",
        "list",
        "help",
        "load_state_dict_from_url",
        "download_url_to_file",
        "get_dir",
        "set_dir",
        "SecureHubError",
        "Policy",
        "Lockfile",
    }
    assert required <= set(securehub.__all__)


def test_load_signature_matches_spec() -> None:
    params = inspect.signature(securehub.load).parameters
    assert list(params)[:3] == ["repo_or_dir", "model", "args"]
    for name, default in {
        "source": "github",
        "policy": None,
        "lock": None,
        "force_reload": False,
        "verbose": True,
        "example_inputs": None,
    }.items():
        assert params[name].default == default, name
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["kwargs"].kind is inspect.Parameter.VAR_KEYWORD


def test_torch_hub_helper_signatures() -> None:
    p = inspect.signature(securehub.load_state_dict_from_url).parameters
    assert list(p)[:6] == ["url", "model_dir", "map_location", "progress", "check_hash", "file_name"]
    assert p["sha256"].kind is inspect.Parameter.KEYWORD_ONLY
    q = inspect.signature(securehub.download_url_to_file).parameters
    assert list(q)[:4] == ["url", "dst", "hash_prefix", "progress"]


def test_unknown_attribute_raises() -> None:
    try:
        securehub.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_set_dir_get_dir(tmp_path, monkeypatch) -> None:
    import securehub._util.hubdir as hubdir

    monkeypatch.setattr(hubdir, "_override", None)
    monkeypatch.setenv("SECUREHUB_DIR", str(tmp_path / "env"))
    assert securehub.get_dir() == str(tmp_path / "env")
    securehub.set_dir(tmp_path / "explicit")
    assert securehub.get_dir() == str(tmp_path / "explicit")
    monkeypatch.setattr(hubdir, "_override", None)
    monkeypatch.delenv("SECUREHUB_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert securehub.get_dir() == str(tmp_path / "xdg" / "securehub")
