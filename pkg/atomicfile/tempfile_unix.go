//go:build unix

package atomicfile

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
)

// createTemp is os.CreateTemp(dir, prefix+"*") with fewer system calls:
// os.OpenFile makes a regular file non-blocking, tries the network poller
// (which refuses it) and makes it blocking again (four fcntl and an
// epoll_ctl per file); os.NewFile on a descriptor opened blocking only
// asks for its flags. kvx out writes a file per delivery, so this is on a
// fleet's hot path.
func createTemp(dir, prefix string) (*os.File, error) {
	for try := 0; ; try++ {
		name := dir + string(os.PathSeparator) + prefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		fd, err := syscall.Open(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o600)
		for err == syscall.EINTR {
			fd, err = syscall.Open(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o600)
		}
		if err == nil {
			return os.NewFile(uintptr(fd), name), nil
		}
		if errors.Is(err, fs.ErrExist) && try < 10000 {
			continue
		}
		return nil, &fs.PathError{Op: "createtemp", Path: dir + string(os.PathSeparator) + prefix + "*", Err: err}
	}
}
