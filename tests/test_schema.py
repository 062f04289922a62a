"""The stored row: its columns from a report's fields, and a report's values as a row."""

import math

import numpy as np
import pytest

from thermostat_ctrl.bridge.schema import (
    DEVICE_TIME, KNOWN_FIELDS, check_fields, columns_for, report_fields, row_values, stored_field,
)

REPORT = [
    {"channel": 0, "time": 3523.442, "interval": 0.12, "adc": 0.8168, "sens": 10000.5,
     "temperature": 24.9987, "pid_engaged": True, "i_set": 0.123, "dac_value": 1.5615,
     "dac_feedback": 1.559, "i_tec": 1.549, "tec_i": 0.1225, "tec_u_meas": 0.24,
     "pid_output": 0.123},
    {"channel": 1, "time": 3523.442, "interval": 0.12, "adc": None, "sens": None,
     "temperature": None, "pid_engaged": False, "i_set": 0.0, "dac_value": 1.5,
     "dac_feedback": 1.5, "i_tec": 1.5, "tec_i": 0.0, "tec_u_meas": 0.0,
     "pid_output": None},
]



def test_report_fields_and_columns():
    fields = report_fields(REPORT)
    assert fields[0] == DEVICE_TIME and "channel" not in fields and len(fields) == 13
    assert fields[1:4] == ["interval", "adc", "sens"]
    assert columns_for(["temperature", "i_set"]) == [
        "temperature_ch0", "temperature_ch1", "i_set_ch0", "i_set_ch1"]


def test_check_fields_names_unknown_ones():
    assert check_fields(["adc"], ["adc", "sens"]) == ["adc"]
    with pytest.raises(ValueError, match="bogus"):
        check_fields(["adc", "bogus"], ["adc", "sens"])


def test_row_values_bools_nulls_and_in_place():
    fields = ["temperature", "pid_engaged", DEVICE_TIME, "missing"]
    row = row_values(REPORT, fields)
    assert row.dtype == np.float64 and row.shape == (8,)
    assert row[0] == 24.9987 and math.isnan(row[1])
    assert row[2:4].tolist() == [1.0, 0.0]
    assert row[4:6].tolist() == [3523.442, 3523.442]
    assert np.isnan(row[6:]).all()
    out = np.zeros(8)
    assert row_values(REPORT, fields, out) is out
    np.testing.assert_array_equal(out, row)



def test_the_device_time_is_stored_under_its_own_name():
    assert stored_field("time") == DEVICE_TIME and stored_field("adc") == "adc"
    assert DEVICE_TIME in KNOWN_FIELDS and "time" not in KNOWN_FIELDS
