"""Tests for :mod:`waiter_service.validation`."""

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.validation import (
    MAX_EXTRA_PARAMETERS,
    MAX_EXTRA_PARAMETERS_LENGTH,
    MAX_MESSAGE_LENGTH,
    InvalidInput,
    check_message,
    check_service_id,
    parse_extra_parameters,
)


class CheckServiceIdTests(SynchronousTestCase):
    def test_platform_like_ids_are_accepted(self) -> None:
        """The platform's ids and other plain names are returned unchanged."""
        for value in (
            "bff13094b0988e404713177921198f5f_0",
            "a",
            "Run-2.v1_x",
            "x" * 128,
        ):
            self.assertEqual(check_service_id(value), value)

    def test_missing_id_is_refused(self) -> None:
        """None and the empty string are refused."""
        for value in (None, ""):
            self.assertRaises(InvalidInput, check_service_id, value)

    def test_paths_are_refused(self) -> None:
        """Nothing that could name another folder or a hidden file is accepted."""
        for value in ("../x", "/etc/passwd", ".", "..", ".hidden", "a/b", "a\\b", "a\x00b"):
            self.assertRaises(InvalidInput, check_service_id, value)

    def test_odd_characters_are_refused(self) -> None:
        """Unicode look-alikes, blanks, line ends and leading punctuation are refused."""
        for value in (
            "\uff41bc",  # fullwidth a
            "abc\u2215x",  # division slash
            "caf\u00e9",
            "abc\n",
            " abc",
            "a b",
            "-abc",
            "_abc",
        ):
            self.assertRaises(InvalidInput, check_service_id, value)

    def test_long_ids_are_refused(self) -> None:
        """An id longer than 128 characters is refused, however long."""
        for value in ("x" * 129, "x" * 10_000):
            self.assertRaises(InvalidInput, check_service_id, value)


class ParseExtraParametersTests(SynchronousTestCase):
    def test_platform_example(self) -> None:
        """URL values keep their '=' and '?' and the trailing comma is skipped."""
        value = "auth=https://host/authManager/AuthManager?wsdl,gss=https://host/gss?wsdl,"
        self.assertEqual(
            parse_extra_parameters(value),
            {
                "auth": "https://host/authManager/AuthManager?wsdl",
                "gss": "https://host/gss?wsdl",
            },
        )

    def test_value_with_equals_signs(self) -> None:
        """Only the first '=' separates key and value; blanks around them are dropped."""
        self.assertEqual(
            parse_extra_parameters(" q = https://h/x?a=1&b=2 , e=, "),
            {"q": "https://h/x?a=1&b=2", "e": ""},
        )

    def test_nothing_gives_empty_dict(self) -> None:
        """None, the empty string and only commas give no parameters."""
        for value in (None, "", ",", ",,,"):
            self.assertEqual(parse_extra_parameters(value), {})

    def test_duplicate_key_is_refused(self) -> None:
        """A key given twice is refused."""
        self.assertRaises(InvalidInput, parse_extra_parameters, "a=1,b=2,a=3")

    def test_item_without_equals_is_refused(self) -> None:
        """An item that is not key=value is refused."""
        self.assertRaises(InvalidInput, parse_extra_parameters, "a=1,b,")

    def test_bad_keys_are_refused(self) -> None:
        """A key must start with a letter and hold only safe characters."""
        for value in ("=x", "1a=x", "a b=x", "a/b=x", "\u00e4=x", "_a=x", "k" * 65 + "=x"):
            self.assertRaises(InvalidInput, parse_extra_parameters, value)

    def test_control_characters_are_refused(self) -> None:
        """Line ends, NUL, escape and DEL are refused anywhere in the string."""
        for value in ("a=1\n", "a=1\r\nb=2", "a=\x00", "a=\x1b[31m", "a=\x7f"):
            self.assertRaises(InvalidInput, parse_extra_parameters, value)

    def test_length_limit(self) -> None:
        """The longest allowed string is accepted, one character more is refused."""
        longest = "a=" + "x" * (MAX_EXTRA_PARAMETERS_LENGTH - 2)
        self.assertEqual(len(parse_extra_parameters(longest)["a"]), len(longest) - 2)
        self.assertRaises(InvalidInput, parse_extra_parameters, longest + "x")

    def test_item_limit(self) -> None:
        """The most items allowed are accepted, one more is refused."""
        items = [f"k{i}=v" for i in range(MAX_EXTRA_PARAMETERS + 1)]
        self.assertEqual(len(parse_extra_parameters(",".join(items[:-1]))), MAX_EXTRA_PARAMETERS)
        self.assertRaises(InvalidInput, parse_extra_parameters, ",".join(items))


class CheckMessageTests(SynchronousTestCase):
    def test_normal_lines_are_accepted(self) -> None:
        """A line of text, markup included, is returned unchanged."""
        for value in ("finish", "fail <b>x</b> & more", "x" * MAX_MESSAGE_LENGTH):
            self.assertEqual(check_message(value), value)

    def test_missing_or_blank_is_refused(self) -> None:
        """None, the empty string and blanks only are refused."""
        for value in (None, "", "   "):
            self.assertRaises(InvalidInput, check_message, value)

    def test_more_than_one_line_is_refused(self) -> None:
        """A line end or other control character inside is refused."""
        for value in ("finish\n", "fail\nfinish", "a\rb", "a\x00b", "a\x7fb"):
            self.assertRaises(InvalidInput, check_message, value)

    def test_too_long_is_refused(self) -> None:
        """A message longer than MAX_MESSAGE_LENGTH is refused."""
        self.assertRaises(InvalidInput, check_message, "x" * (MAX_MESSAGE_LENGTH + 1))
