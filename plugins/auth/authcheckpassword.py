"""auth/authcheckpassword - the old name of auth/auth_checkpassword (Michael
Holzt's original plugin); same arguments and behaviour, see that plugin.

Example config/plugins line:
  auth/authcheckpassword checkpw /usr/bin/checkpw true /bin/true
"""

from qpsmtpd_py.api import isa_plugin


class AuthCheckPasswordAlias(isa_plugin("auth/auth_checkpassword")):
    pass
