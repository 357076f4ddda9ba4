from videomamba.cli import main


def test_info_prints_paper_numbers(capsys):
    assert main(["info", "videomamba_small"]) == 0
    out = capsys.readouterr().out
    assert "26.39 M" in out and "34.24" in out and "spatiotemporal" in out


def test_info_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "videomamba_giant"]) == 2
    assert "unknown model" in capsys.readouterr().err
