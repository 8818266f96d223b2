import subprocess
import sys
from pathlib import Path

import pytest

from processors.state_dir import claim_state_dir

HOLD = """
import sys, time
from pathlib import Path
from processors.state_dir import claim_state_dir
print(claim_state_dir(Path(sys.argv[1]), "worker1"), flush=True)
time.sleep(60)
"""


def test_a_free_slot_is_the_slot_s_own_folder(tmp_path: Path) -> None:
    assert claim_state_dir(tmp_path, "worker1") == tmp_path / "worker1"


def test_a_slot_held_by_another_process_gives_a_folder_of_its_own(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == str(tmp_path / "worker1")
        mine = claim_state_dir(tmp_path, "worker1")
        assert mine != tmp_path / "worker1"
        assert mine.parent == tmp_path
        assert mine.name.startswith("worker1-pid")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("slot", ["", "../x", ".hidden"])
def test_a_slot_that_is_not_a_plain_name_is_refused(tmp_path: Path, slot: str) -> None:
    with pytest.raises(ValueError, match="WORKER_SLOT"):
        claim_state_dir(tmp_path, slot)
