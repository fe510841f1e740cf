"""Session-wide safety for every test (unit and e2e)."""

from tests.support import procs

# A container that is not running reports Pid 0, and os.kill(0, SIGKILL) would kill
# the whole process group: pytest, make and the CI job (seen as CI exit 137).
procs.install_guard()
