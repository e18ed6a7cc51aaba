"""gpuhil.symbols: the symbolic values error messages show."""
import enum

from gpuhil.symbols import enum_name, flag_names


class Mem(enum.IntEnum):
    GUEST = 1
    HOST3D = 2


class Access(enum.IntFlag):
    NONE = 0
    READ = 1
    WRITE = 2
    RW = 3
    END = 4


def test_enum_name_is_the_member_name_or_the_number():
    assert enum_name(2, Mem) == "HOST3D"
    assert enum_name(7, Mem) == 7


def test_flag_names_use_single_bit_members_in_order():
    assert flag_names(Access.RW | Access.END, Access) == "READ|WRITE|END"
    assert flag_names(2, Access) == "WRITE"


def test_flag_names_append_unknown_bits_in_hex_and_show_no_bits_as_zero():
    assert flag_names(0x41, Access) == "READ|0x40"
    assert flag_names(0, Access) == "0"
