"""``python -m alertmux_antares``: print the path of ANTARES's Kafka CA certificate (for ``ca_file``)."""

from alertmux_antares import ca_file

print(ca_file())
