#!/usr/bin/python3
"""A directory mounted through FUSE whose data reads and writes hang while a
flag file exists: a disk that stalls (a dying drive, a hung network mount)
while its metadata still answers from memory. Used by tests.

    stalling_fs.py BACKING_DIR MOUNT_POINT FLAG_FILE

Everything passes through to BACKING_DIR; read, write and fsync wait while
FLAG_FILE exists. Page caching is off (direct_io), so every read reaches
here. Runs in the foreground until unmounted (umount MOUNT_POINT)."""
import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class Stalling(Operations):
    def __init__(self, root, flag):
        self.root = root
        self.flag = flag

    def _path(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _wait(self):
        while os.path.exists(self.flag):
            time.sleep(0.05)

    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        return os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._path(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
                "st_uid", "st_ino")
        return {key: getattr(st, key) for key in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def mkdir(self, path, mode):
        return os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        return os.rmdir(self._path(path))

    def unlink(self, path):
        return os.unlink(self._path(path))

    def rename(self, old, new):
        return os.rename(self._path(old), self._path(new))

    def utimens(self, path, times=None):
        return os.utime(self._path(path), times)

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")
        return {key: getattr(st, key) for key in keys}

    def open(self, path, flags):
        return os.open(self._path(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, length, offset, fh):
        self._wait()
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        self._wait()
        return os.pwrite(fh, buf, offset)

    def truncate(self, path, length, fh=None):
        with open(self._path(path), "r+") as f:
            f.truncate(length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    def fsync(self, path, datasync, fh):
        self._wait()
        return os.fsync(fh)


if __name__ == "__main__":
    backing, mount_point, flag = sys.argv[1:4]
    FUSE(Stalling(backing, flag), mount_point, foreground=True, direct_io=True, nothreads=False)
