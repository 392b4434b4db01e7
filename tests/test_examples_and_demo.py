"""The quick start and the demo work as README says: separate processes talking through one file (or, with
$LITEMQ_URL naming one, a PostgreSQL schema)."""

import subprocess

from conftest import PYTHON, REPO


def run(args, cwd, env, timeout=60):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_send_and_receive_examples_talk_through_the_default_file(tmp_path, program_env, engine):
    receiver = subprocess.Popen([PYTHON, str(REPO / "examples" / "receive.py"), "2"], cwd=tmp_path,
                                env=program_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().startswith(" [*] Waiting")
        first = run([PYTHON, str(REPO / "examples" / "send.py")], tmp_path, program_env)
        second = run([PYTHON, str(REPO / "examples" / "send.py"), "second", "message"], tmp_path, program_env)
        assert first.stdout == " [x] Sent 'Hello World!'\n"
        assert second.stdout == " [x] Sent 'second message'\n"
        out, err = receiver.communicate(timeout=30)
    finally:
        receiver.kill()
    assert out == " [x] Received 'Hello World!'\n [x] Received 'second message'\n", err
    assert (tmp_path / "litemq.db").exists() == (engine == "sqlite")


def test_demo_runs_a_producer_and_a_consumer_process(tmp_path, program_env, engine):
    result = run([PYTHON, "-m", "litemq", "demo", "-n", "3"], tmp_path, program_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sent = [line for line in lines if "Sent" in line]
    received = [line for line in lines if "Received" in line]
    assert [line.split("Sent ")[1] for line in sent] == ["'Hello World! #1'", "'Hello World! #2'",
                                                         "'Hello World! #3'"]
    assert [line.split("Received ")[1] for line in received] == ["'Hello World! #1'", "'Hello World! #2'",
                                                                 "'Hello World! #3'"]
    producer_pids = {line.split("pid ")[1].split("]")[0] for line in sent}
    consumer_pids = {line.split("pid ")[1].split("]")[0] for line in received}
    assert len(producer_pids) == len(consumer_pids) == 1 and producer_pids != consumer_pids
    assert (tmp_path / "litemq.db").exists() == (engine == "sqlite")
