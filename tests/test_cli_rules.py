"""``spine-assess rules``: checks the rules and a clinical file, exit 0 / 2."""

from __future__ import annotations

from pipeline.cli import main


def test_rules_lists_rules_and_empty_clinical_fields(repo_root, capsys):
    rc = main(["rules", "--clinical", str(repo_root / "sample_dicom" / "03_chronic_severe_collapse")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "relative.height_loss_gt_two_thirds" in out and "JNCCN 2010, Table 1, Contraindications, Relative" in out
    # each cited source once, in full
    assert out.count("Parmar VK, Resnick DK. Kyphoplasty and Vertebroplasty. In: Pain, pp 895-898.") == 1
    assert "JNCCN 2010: JNCCN (Journal of the National Comprehensive Cancer Network) 2010;8:1095-1102" in out
    assert "JNCCN 2012: JNCCN (Journal of the National Comprehensive Cancer Network) 2012;10:715-719" in out
    assert "Cancer pain summary: Vertebroplasty and Kyphoplasty for Cancer Pain." in out
    assert "not given: surgical_backup" in out
    assert "not given: prior_imaging.bone_scan" in out
    assert "radiologist findings given for: T12" in out


def test_rules_invalid_clinical_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "clinical.yaml"
    bad.write_text("alergies: {bone_cement: true}\n")
    assert main(["rules", "--clinical", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "unknown field 'alergies'" in captured.err
    assert captured.out == "", "the error comes first, not after the list of rules"


def test_rules_missing_clinical_path_is_a_usage_error(tmp_path, capsys):
    assert main(["rules", "--clinical", str(tmp_path / "nope.yaml")]) == 2
    captured = capsys.readouterr()
    assert "usage error" in captured.err and "no such file" in captured.err and captured.out == ""


def test_rules_folder_without_clinical_file_exits_2(tmp_path, capsys):
    assert main(["rules", "--clinical", str(tmp_path)]) == 2
    assert "no clinical.yaml" in capsys.readouterr().err
