"""Writing a manifest back to zoo.yaml: what `zoo build`, `zoo profile` and `zoo eval --record` change.

A hand-written manifest stays the user's: fields are written as they were given (unset defaults are not spelled
out), `${VAR}` expressions (e.g. `file: ${EDGED_SHARED}/models/x.onnx`) are written back unexpanded wherever the
value did not change, and the comment block at the top of the file is kept. Comments inside the body are not
(PyYAML cannot round-trip them); keep notes in the header or in `provenance.notes`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from edged.errors import EdgedError
from edged.yamlfile import load_yaml
from edged.zoo.manifest import DeviceProfile, Manifest, Variant, Zoo, load_zoo


def save_zoo(zoo: Zoo, manifest: Manifest | None = None) -> Zoo:
    """Write `manifest` (default: the zoo's own) to the zoo's zoo.yaml and load it back, verified like any other."""
    save_manifest(manifest or zoo.manifest, zoo.path)
    return load_zoo(zoo.path)


def save_manifest(manifest: Manifest, path: Path, new_header: str = "") -> None:
    """Write atomically (a reader never sees half a manifest), keeping the existing file's header and `${VAR}`s.

    `new_header` (comment lines) heads a file written for the first time.
    """
    raw, expanded, header = _existing(path)
    header = header if raw is not None else new_header
    data = manifest_data(manifest)
    if raw is not None:
        data = _restore_env_refs(data, expanded, raw)
    body = yaml.dump(data, Dumper=_ManifestDumper, sort_keys=False, allow_unicode=True, width=120)
    body = body.replace("\n  - id: ", "\n\n  - id: ").replace("variants:\n\n", "variants:\n")  # as people write
    text = header + body
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".zoo-", suffix=".yaml", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600: a manifest is meant to be read by the service user too
        os.replace(tmp, path)
    except OSError as exc:
        raise EdgedError(f"{path}: cannot write the manifest: {exc}") from None


def manifest_data(manifest: Manifest) -> dict[str, Any]:
    """The manifest as plain YAML data: only the fields that were given, techniques as 'a+b'."""
    data = manifest.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    data = {"schema": manifest.schema_, **data}  # the version tag is always spelled out
    for entry, variant in zip(data["variants"], manifest.variants):
        entry["technique"] = variant.technique_name
        if set(entry["decoder"]) == {"type"}:
            entry["decoder"] = entry["decoder"]["type"]  # `decoder: yolox`, the shorthand people write
        if not entry.get("profiles"):
            entry.pop("profiles", None)
        if not entry.get("provenance"):
            entry.pop("provenance", None)
    return data


def replace_variant(manifest: Manifest, variant: Variant) -> Manifest:
    """The manifest with `variant` in place of the one with its id, or appended."""
    variants = [variant if v.id == variant.id else v for v in manifest.variants]
    if all(v.id != variant.id for v in manifest.variants):
        variants.append(variant)
    return manifest.model_copy(update={"variants": variants})


def with_profile(variant: Variant, device_class: str, **figures: Any) -> Variant:
    """`variant` with `figures` (accuracy=, latency=, ...) merged into its profile for `device_class`."""
    current = variant.profiles.get(device_class, DeviceProfile())
    updated = current.model_copy(update={k: v for k, v in figures.items() if v is not None})
    return variant.model_copy(update={"profiles": {**variant.profiles, device_class: updated}})


def _existing(path: Path) -> tuple[Any, Any, str]:
    """(raw data with ${VAR}s, expanded data, header comment) of the file being replaced, if there is one."""
    if not path.is_file():
        return None, None, ""
    text = path.read_text(encoding="utf-8")
    header_lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        header_lines.append(line)
    raw = load_yaml(path, expand_env=False).data
    try:
        expanded = load_yaml(path).data
    except EdgedError:  # a variable no longer set: nothing can be shown unchanged, write values as they are
        expanded = None
    return raw, expanded, "".join(header_lines)


def _restore_env_refs(new: Any, expanded: Any, raw: Any) -> Any:
    """Put back `${VAR}` text wherever the new value is still what that text expanded to."""
    if isinstance(new, dict) and isinstance(expanded, dict) and isinstance(raw, dict):
        return {k: _restore_env_refs(v, expanded.get(k), raw.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(expanded, list) and isinstance(raw, list):
        if all(isinstance(x, dict) and "id" in x for x in new):  # variants: match by id, not position
            pairs = {e.get("id"): (e, r) for e, r in zip(expanded, raw) if isinstance(e, dict) and isinstance(r, dict)}
            return [_restore_env_refs(item, *pairs.get(item["id"], (None, None))) for item in new]
        if len(new) == len(expanded) == len(raw):
            return [_restore_env_refs(n, e, r) for n, e, r in zip(new, expanded, raw)]
        return new
    if isinstance(raw, str) and "${" in raw and expanded is not None and str(new) == str(expanded):
        return raw
    return new


class _ManifestDumper(yaml.SafeDumper):
    """Short lists of scalars (sizes, means, strides) in flow style, the rest (labels) as indented blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    flow = len(items) <= 12 and all(isinstance(x, str | int | float | bool) for x in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_ManifestDumper.add_representer(list, _represent_list)
