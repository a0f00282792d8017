"""The glog writer: source tags from the caller, log files that end with their command."""
import inspect
import io
import re

from pycaffe_mct.solvers.log import (GlogWriter, command_log, default_writer, log_to_file,
                                     logged_command)


def _next_line():
    """``test_log.py:N`` for the line after the one that called this."""
    return f"test_log.py:{inspect.currentframe().f_back.f_lineno + 1}"


def _tags(buffer):
    return re.findall(r"^[IWE]\d{4} [\d:.]+ +\d+ (\S+)\] ", buffer.getvalue(), re.M)


def test_lines_name_the_calling_file_and_line_unless_given_a_tag():
    buffer = io.StringIO()
    log = GlogWriter(stream=buffer, prefix="[M_a] ")
    first = _next_line()
    log.info("a")
    log.warning("b", "solver.cpp:239")
    third = _next_line()
    log.error("c", "data_layer.cpp:0")
    assert _tags(buffer) == [first, "solver.cpp:239", third]
    assert buffer.getvalue().splitlines()[0].endswith("] [M_a] a")
    assert buffer.getvalue().startswith("I") and "\nW" in buffer.getvalue()


def test_a_helper_logging_for_its_caller_names_the_caller():
    buffer = io.StringIO()
    log = GlogWriter(stream=buffer)

    def helper(message):
        log.info(message, stacklevel=2)
    line = _next_line()
    helper("x")
    assert _tags(buffer) == [line]


def test_a_disabled_writer_writes_nothing():
    buffer = io.StringIO()
    GlogWriter(stream=buffer, enabled=False).info("x")
    assert buffer.getvalue() == ""


def test_a_commands_log_file_is_closed_when_it_returns(tmp_path, capsys):
    @logged_command
    def command(path):
        log_to_file(str(path))
        default_writer().info("inside")
        return 0
    assert command(tmp_path / "one.log") == 0
    default_writer().info("after")
    with command_log():
        default_writer().info("another command")
    assert "inside" in (tmp_path / "one.log").read_text()
    assert "after" not in (tmp_path / "one.log").read_text()
    assert "another command" not in (tmp_path / "one.log").read_text()
    assert "after" in capsys.readouterr().err
