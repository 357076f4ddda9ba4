from videomamba.cli import main


def test_info_prints_paper_numbers(capsys):
    assert main(["info", "videomamba_small"]) == 0
    out = capsys.readouterr().out
    assert "26.39 M" in out and "34.24" in out and "spatiotemporal" in out


def test_info_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "videomamba_giant"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_ablate_cli_reduced_run(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "videomamba", "ablate", "--preset", "cpu", "--study", "frames",
                             "--seeds", "0", "--output", str(tmp_path), "--no-progress"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "### frames" in result.stdout and (tmp_path / "ablations.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "videomamba", "ablate", "--study", "nonsense", "--preset", "cpu",
                          "--output", str(tmp_path / "x")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown study 'nonsense'" in bad.stderr
