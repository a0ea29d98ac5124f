"""content_log - append every incoming message to an archive file.

Useful for debugging other plugins or keeping a raw archive. Each message
(header and body as received, with our Received header, LF line ends) is
appended to the file, one after the other, with nothing in between (the format
qpsmtpd used); the file is locked (flock) while a message is written. Files are
created mode 0600 (they hold private mail) and a missing directory is created
(0700). Errors are logged and never stop the message.

Config files:
  content_log_enabled  first line true/1/yes logs, 0/false/no (or anything
                       else) does not; no file: enabled
  content_log_file     path of the archive, with strftime(3) codes, relative to
                       the directory the server runs in; default mail/%Y%m%d
                       (one file per day)

Arguments: none.  Hooks: data_post (always DECLINED).
Load it after the plugins that refuse mail if only accepted mail should land
in the archive.
Example config/plugins line:  content_log
"""

import fcntl
import os
import time

from qpsmtpd_py.api import DECLINED, LOGERROR, LOGINFO, Plugin


class ContentLog(Plugin):
    arguments = ()                # none but loglevel: anything else stops start-up

    def hook_data_post(self, transaction):
        if not self.enabled():
            self.log(LOGINFO, "skip, disabled by content_log_enabled")
            return DECLINED
        path = time.strftime(self.config("content_log_file") or "mail/%Y%m%d", time.localtime())
        try:
            directory = os.path.dirname(path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as out:
                fcntl.flock(out, fcntl.LOCK_EX)     # whole messages, even from many workers
                transaction.write_message(out)
        except OSError as exc:
            self.log(LOGERROR, f"error, could not write {path}: {exc}")
            return DECLINED
        self.log(LOGINFO, f"pass, message appended to {path}")
        return DECLINED

    def enabled(self):
        value = self.config("content_log_enabled")
        if value is None:
            return True
        return value.strip().lower() in ("true", "1", "yes")
