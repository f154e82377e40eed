"""scripts/install-python-env.sh refuses, before it deletes or downloads anything, an environment
the disk cannot hold (exit status 3, which scripts/test.sh reads as "skip the lower-bound leg")."""

import os
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_refuses_an_environment_the_disk_cannot_hold(tmp_path):
    with open(os.path.join(ROOT, "export", "requirements-min.lock"), encoding="utf-8") as f:
        lock = f.read()
    assert "# installed-mb: " in lock
    huge = tmp_path / "huge.lock"
    huge.write_text("\n".join("# installed-mb: 999999999" if line.startswith("# installed-mb:") else line
                              for line in lock.splitlines()) + "\n", encoding="utf-8")
    venv = ".venv-test-no-room"
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-python-env.sh"), venv, str(huge)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "needs about 976563.6 GB of disk" in r.stderr and "Free some space" in r.stderr
    assert not os.path.exists(os.path.join(ROOT, venv))
