"""check_norelay - take relaying away from clients listed in config/norelayclients.

Some hosts would be allowed to relay by `relay` (RELAYCLIENT from tcpserver rules,
a broad relayclients prefix) but must not: the gateway, a shared NAT address, a
webmail box. This plugin clears the relay permission again for them.

Config file:
  norelayclients  one entry a line: a full IP address (192.168.42.7), or an
                  address prefix ending in a dot (192.168.42. matches the /24);
                  CIDR blocks (10.1.0.0/16) and IPv6 addresses in any spelling
                  work too (2001:0db8:0000:0000:0000:0000:0000:0001 is 2001:db8::1;
                  whole hextets such as 2001:0db8:0005: are a prefix)

Arguments: none.
Hooks: connect. Load it *after* relay (check_relay): it only clears
connection.relay_client and removes RELAYCLIENT from the environment, so every
later plugin (rcpt_ok, is_immune()) sees a normal client. It never rejects.

Log (LOGNOTICE): "<ip> denied relaying".

Example config/plugins lines:
  relay
  check_norelay
"""

import os

from qpsmtpd_py.api import DECLINED, LOGDEBUG, LOGNOTICE, IPList, Plugin


class CheckNorelay(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_connect(self, transaction):
        conn = self.connection
        if conn.remote_ip in self.parsed_config("norelayclients", IPList):
            conn.relay_client = False
            os.environ.pop("RELAYCLIENT", None)
            self.log(LOGNOTICE, f"{conn.remote_ip} denied relaying")
        else:
            self.log(LOGDEBUG, "skip, not in norelayclients")
        return DECLINED
