"""Clinical inputs: loading, strict validation with clear messages, the published schema, the samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline.eligibility.clinical import ClinicalInputs, clinical_json_schema, load_clinical, parse_clinical
from pipeline.eligibility.clinical_file import find_clinical_file
from pipeline.errors import ConfigError
from pipeline.levels import Level

SAMPLES = (
    "01_normal",
    "02_acute_osteoporotic_wedge",
    "03_chronic_severe_collapse",
    "04_myeloma_four_acute_levels",
)


def test_empty_mapping_is_valid_and_all_unknown():
    c = parse_clinical({})
    assert c.pain.vas is None and c.aetiology.cause is None and c.radiologist_findings == {}
    assert c.prior_imaging.bone_scan is None


def test_full_example_round_trip():
    c = parse_clinical(
        {
            "pain": {"vas": 6.5, "levels": ["l1", " T12 "]},
            "radiologist_findings": {"l1": {"burst_fracture": True}},
        }
    )
    assert c.pain.vas == 6.5
    assert c.pain.levels == (Level.L1, Level.T12)
    assert c.radiologist_findings[Level.L1].burst_fracture is True


# (data, expected message regex)
ERRORS = [
    (
        {"alergies": {"bone_cement": True}},
        r"clinical.yaml: unknown field 'alergies' \(did you mean 'allergies'\?\)",
    ),
    (
        {"pain": {"vsa": 7}},
        r"unknown field 'pain.vsa' \(did you mean 'vas'\?\); known fields here: .*duration_weeks",
    ),
    (
        {"radiologist_findings": {"L1": {"burst": True}}},
        r"unknown field 'radiologist_findings.L1.burst' \(did you mean 'burst_fracture'\?\)",
    ),
    ({"pain": {"vas": 11}}, r"pain.vas: input should be less than or equal to 10 \(got 11\)"),
    ({"pain": {"vas": -1}}, r"pain.vas: input should be greater than or equal to 0"),
    ({"pain": {"vas": "7"}}, r"pain.vas: input should be a valid number \(got str\)"),
    ({"pain": {"vas": True}}, r"pain.vas: input should be a valid number"),
    ({"infection": {"local": "no"}}, r"infection.local: input should be a valid boolean \(got str\)"),
    ({"aetiology": {"cause": "cancer"}}, r"aetiology.cause: input should be 'osteoporosis', 'myeloma'"),
    ({"pain": {"levels": ["L9"]}}, r"pain.levels.0: unknown vertebral level 'L9'"),
    ({"radiologist_findings": {"X1": {}}}, r"radiologist_findings.X1.\[key\]: unknown vertebral level 'X1'"),
    (
        {"radiologist_findings": {"L1": {"retropulsion_canal_pct": 120}}},
        r"radiologist_findings.L1.retropulsion_canal_pct: input should be less than or equal to 100",
    ),
    ({"coagulation": {"inr": 0}}, r"coagulation.inr: input should be greater than 0"),
    (
        {"prior_imaging": {"bone_scan": {"performed": True}}},
        r"prior_imaging.bone_scan: performed is true: list uptake_levels \(\[\] for a normal scan\)",
    ),
    (
        {"prior_imaging": {"acute_levels": ["L1"], "chronic_levels": ["L1"]}},
        r"prior_imaging: level\(s\) L1 listed both as acute and as chronic",
    ),
    ({"version": 2}, r"version: input should be 1"),
    ({"pain": 7}, r"pain: input should be a valid dictionary"),
]


@pytest.mark.parametrize("data, message", ERRORS, ids=[m for _, m in ERRORS])
def test_invalid_clinical_inputs(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_clinical(data, where="clinical.yaml")
    assert "docs/clinical_inputs.md" in str(info.value)


def test_error_message_does_not_echo_free_text():
    with pytest.raises(ConfigError) as info:
        parse_clinical({"aetiology": {"primary_tumour": 12345}})
    assert "12345" not in str(info.value)


def test_load_yaml_and_json_give_the_same_inputs(tmp_path, repo_root):
    src = repo_root / "sample_dicom" / "02_acute_osteoporotic_wedge" / "clinical.yaml"
    from_yaml = load_clinical(src)
    (tmp_path / "clinical.json").write_text(json.dumps(yaml.safe_load(src.read_text())))
    from_json = load_clinical(tmp_path / "clinical.json")
    assert from_json.model_dump() == from_yaml.model_dump()
    assert from_json.source == tmp_path / "clinical.json"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("clinical.yaml", "pain: [\n", r"clinical.yaml: invalid YAML at line"),
        ("clinical.json", '{"pain": ', r"clinical.json: invalid JSON at line 1"),
        ("clinical.yaml", "- 1\n- 2\n", r"top level must be a mapping"),
        ("clinical.txt", "pain: {}\n", r"must end in .yaml, .yml or .json"),
    ],
)
def test_file_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_clinical(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="clinical file not found"):
        load_clinical(tmp_path / "clinical.yaml")


def test_find_clinical_file(tmp_path):
    assert find_clinical_file(tmp_path) is None
    (tmp_path / "clinical.json").write_text("{}")
    assert find_clinical_file(tmp_path) == tmp_path / "clinical.json"
    (tmp_path / "clinical.yml").write_text("{}")
    with pytest.raises(ConfigError, match="several clinical files"):
        find_clinical_file(tmp_path)


@pytest.mark.parametrize("study", SAMPLES)
def test_sample_clinical_files_are_valid(study, repo_root):
    study_dir = repo_root / "sample_dicom" / study
    path = find_clinical_file(study_dir)
    assert path == study_dir / "clinical.yaml"
    assert isinstance(load_clinical(path), ClinicalInputs)


def test_published_schema_is_current(repo_root):
    """configs/clinical.schema.json is generated from the models; regenerate with ::

    python -c "from pipeline.eligibility.clinical import write_clinical_schema as w
    w('configs/clinical.schema.json')"
    """
    published = json.loads((repo_root / "configs" / "clinical.schema.json").read_text())
    assert published == clinical_json_schema()


def test_published_schema_agrees_with_the_loader(repo_root):
    schema = json.loads((repo_root / "configs" / "clinical.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for study in SAMPLES:
        data = yaml.safe_load((repo_root / "sample_dicom" / study / "clinical.yaml").read_text())
        assert not list(validator.iter_errors(data)), study
    for data, _ in ERRORS:
        if data in (
            {"prior_imaging": {"bone_scan": {"performed": True}}},
            {"prior_imaging": {"acute_levels": ["L1"], "chronic_levels": ["L1"]}},
        ):
            continue  # cross-field checks live in the loader only
        assert list(validator.iter_errors(data)), data


def test_documented_example_is_valid(repo_root):
    """The example in docs/clinical_inputs.md loads (the docs cannot drift from the format)."""
    text = (repo_root / "docs" / "clinical_inputs.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        parse_clinical(yaml.safe_load(block))


def test_every_field_is_documented(repo_root):
    text = (repo_root / "docs" / "clinical_inputs.md").read_text()

    def names(model: type, prefix: str = "") -> list[str]:
        out = []
        for name, fld in model.model_fields.items():
            out.append(name)
            ann = fld.annotation
            for arg in (ann, *getattr(ann, "__args__", ())):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    out.extend(names(arg))
        return out

    from pipeline.eligibility.clinical import RadiologistFindings

    for name in set(names(ClinicalInputs)) | set(RadiologistFindings.model_fields):
        assert f"`{name}`" in text, f"docs/clinical_inputs.md does not document `{name}`"


def test_path_is_not_required_to_exist_for_parse(tmp_path: Path):
    assert parse_clinical({"can_lie_prone": True}).source is None
