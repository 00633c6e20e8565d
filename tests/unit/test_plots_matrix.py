from matplotlib.figure import Figure

from lab.plots.matrix import matrix_figure, matrix_markdown, status_grid

INIS = [
    {
        "name": "deb12",
        "kind": "linux-vm",
        "release": "debian12",
        "passed": True,
        "checks": [{"name": "login", "status": "passed"}, {"name": "write", "status": "passed"}],
    },
    {
        "name": "ipxe1",
        "kind": "ipxe",
        "release": None,
        "passed": False,
        "checks": [{"name": "login", "status": "failed"}, {"name": "write", "status": "skipped"}],
    },
]


def test_grid_and_markdown():
    rows, cols, grid = status_grid(INIS)
    assert rows == ["deb12: linux-vm (debian12)", "ipxe1: ipxe"] and cols == ["login", "write"]
    assert grid == [["passed", "passed"], ["failed", "skipped"]]
    assert matrix_markdown(INIS).splitlines() == [
        "| initiator | login | write | result |",
        "|---|---|---|---|",
        "| deb12: linux-vm (debian12) | pass | pass | **passed** |",
        "| ipxe1: ipxe | FAIL | n/a | **FAILED** |",
    ]


def test_matrix_figure(tmp_path):
    fig = matrix_figure(INIS, title="t")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["login", "write"]
    assert [t.get_text() for t in ax.texts] == ["pass", "pass", "FAIL", "n/a"]
    fig.savefig(tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
