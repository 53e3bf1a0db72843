package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Moving a pod from the state of another layout (adoptPods) is all or
// nothing, whenever the installer dies or a step fails:
//
//  1. its configuration is translated into this state's maps;
//  2. its links are switched to this state's programs and pinned a second
//     time under moving/<pod id>/ here, the staging folder, while their
//     pins in the older state stay;
//  3. the staging folder is renamed to pods/<pod id>: the pod appears here
//     whole, in one step;
//  4. its folder in the older state goes (the links live on by their pins
//     here).
//
// Between steps 2 and 3, the older state's sockops program is attached to
// the pod's cgroup once more, after this state's, by a link pinned in the
// older state under retiring/<pod id> (keepOlderSockops): connections
// paired under the older state live on with the older maps, and only the
// older program knows them (a half-close must move the data towards the
// socket that closed first to the stack, a close must drop the pair).
// It goes with the older state.
//
// Before step 3 the pod belongs to the older state, and the staging folder
// holds only second pins of links pinned there: a pass that finds one
// removes it (rolls the move back, which detaches nothing) and moves the
// pod again. After step 3 the pod belongs here; a pass that finds its
// folder in the older state too, holding the same links, removes that
// folder (finishes the move). At no moment is the pod's cgroup without its
// programs, nor are they attached twice.

// stagingDir is the folder of a state where pods moved from another layout
// are assembled, moving/<pod id>/, before they appear under pods/.
const stagingDir = "moving"

// moveStep, when set (tests), is called after each step of a pod's move;
// an error stops the move there.
var moveStep func(step string) error

func afterStep(step string) error {
	if moveStep == nil {
		return nil
	}
	return moveStep(step)
}

func (n *Node) stagingPodDir(id string) string { return filepath.Join(n.dir, stagingDir, id) }

// rollBackMoves removes what interrupted moves staged here. It runs under
// the state's lock, before any move of this pass.
func (n *Node) rollBackMoves() error {
	if err := os.RemoveAll(filepath.Join(n.dir, stagingDir)); err != nil {
		return fmt.Errorf("roll back an interrupted move of a pod: %w", err)
	}
	return nil
}

// movePod moves pod id from the state in dir (another layout) here, with
// its configuration translated by convert; cgroupDir finds its cgroup
// ("" when gone). It says whether the pod moved;
// a pod half attached or half detached in dir right now (its sockops link
// missing) stays for the next pass.
func (n *Node) movePod(dir, id string, convert func(cgID uint64) (*meshPodConfig, error), cgroupDir func(cgID uint64) string) (bool, error) {
	from := filepath.Join(dir, "pods", id)
	if _, err := os.Stat(n.podDir(id)); err == nil {
		return n.settleTwice(dir, id)
	}
	cgID, err := linkCgroupID(filepath.Join(from, linkSockops))
	if err != nil {
		return false, nil
	}
	pc, err := convert(cgID)
	if err != nil {
		return false, err
	}
	if err := n.putPodConfig(cgID, pc); err != nil {
		return false, err
	}
	if err := afterStep("config"); err != nil {
		return false, err
	}
	stage := n.stagingPodDir(id)
	if err := n.stageLinks(from, stage); err != nil {
		return false, errors.Join(err, os.RemoveAll(stage))
	}
	if err := keepOlderSockops(dir, id, cgroupDir(cgID)); err != nil {
		return false, errors.Join(err, os.RemoveAll(stage))
	}
	if err := afterStep("keep older sockops"); err != nil {
		return false, errors.Join(err, os.RemoveAll(stage))
	}
	if err := os.MkdirAll(n.podsDir(), 0o700); err != nil {
		return false, errors.Join(fmt.Errorf("create pods dir: %w", err), os.RemoveAll(stage))
	}
	// RENAME_NOREPLACE: a pod attached here meanwhile (a plugin's ADD) is
	// never replaced; the move is undone and the next pass settles it.
	if err := unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, n.podDir(id), unix.RENAME_NOREPLACE); err != nil {
		return false, errors.Join(fmt.Errorf("move pod %s into %s: %w", id, n.podsDir(), err), os.RemoveAll(stage))
	}
	if err := afterStep("commit"); err != nil {
		return true, err
	}
	if err := os.RemoveAll(from); err != nil {
		return true, fmt.Errorf("remove moved pod %s from %s: %w", id, dir, err)
	}
	return true, afterStep("leave the older state")
}

// stageLinks switches the links pinned in from to this state's programs
// and pins them again in stage.
func (n *Node) stageLinks(from, stage string) error {
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return fmt.Errorf("create staging dir: %w", err)
	}
	if err := afterStep("stage"); err != nil {
		return err
	}
	for _, a := range []struct {
		name string
		prog *ebpf.Program
	}{{linkSockCreate, n.sockCreate}, {linkSockops, n.sockops}} {
		p := filepath.Join(from, a.name)
		l, err := link.LoadPinnedLink(p, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("load pinned link %s: %w", p, err)
		}
		_, err = switchLink(l, a.prog)
		if err == nil {
			err = afterStep("switch " + a.name)
		}
		if err == nil {
			if err = pinAgain(l, filepath.Join(stage, a.name)); err == nil {
				err = afterStep("stage " + a.name)
			}
		}
		l.Close()
		if err != nil {
			return fmt.Errorf("link %s: %w", p, err)
		}
	}
	return nil
}

// settleTwice handles a pod that has a folder both here and in the state
// in dir. Holding the same links, it is a move interrupted after its
// commit: the older folder goes. A pod whole here with other links was
// attached here again (its sandbox was added again): it leaves dir. A pod
// not whole here is being attached right now (or was left half attached):
// the pod in dir keeps its programs, and the next pass looks again.
func (n *Node) settleTwice(dir, id string) (bool, error) {
	here, err := linkID(filepath.Join(n.podDir(id), linkSockops))
	if err != nil {
		return false, nil
	}
	from := filepath.Join(dir, "pods", id)
	if there, err := linkID(filepath.Join(from, linkSockops)); err == nil && there == here {
		if err := os.RemoveAll(from); err != nil {
			return true, fmt.Errorf("remove moved pod %s from %s: %w", id, dir, err)
		}
		return true, nil
	}
	return false, detachIn(dir, id)
}

// linkID reads the id of the link pinned at p.
func linkID(p string) (link.ID, error) {
	l, err := link.LoadPinnedLink(p, nil)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, err
	}
	return info.ID, nil
}

// pinAgain pins l at p as well, keeping its pin where it was loaded from
// (Link.Pin of a link loaded from a pin moves that pin).
func pinAgain(l link.Link, p string) error {
	raw, ok := l.(interface{ FD() int })
	if !ok {
		return fmt.Errorf("pin %s: %T has no file descriptor", p, l)
	}
	fd, err := unix.FcntlInt(uintptr(raw.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pin %s: duplicate the link's descriptor: %w", p, err)
	}
	dup, err := link.NewFromFD(fd) // owns fd, closed on failure too
	if err != nil {
		return fmt.Errorf("pin %s: %w", p, err)
	}
	defer dup.Close()
	return dup.Pin(p)
}

// retiringDir is the folder of an older state holding, per pod moved out
// of it, the link that runs its sockops program on the pod's cgroup after
// this state's: retiring/<pod id>.
const retiringDir = "retiring"

// keepOlderSockops attaches the sockops program of the older state in dir
// to the pod's cgroup (at cgroup, "" when it is gone) once more, and pins
// the link there under retiring/<id>. Attached after the pod's own link,
// it runs after this state's program: a connection this state pairs is
// marked handled in the shared owner storage before the older program
// sees it, and a connection of the older state is unknown to this one.
// Nothing to do when the link exists, or when the older state has no
// program (half created) or the cgroup is gone.
func keepOlderSockops(dir, id, cgroup string) error {
	pin := filepath.Join(dir, retiringDir, id)
	if _, err := os.Stat(pin); err == nil || cgroup == "" {
		return nil
	}
	prog, err := ebpf.LoadPinnedProgram(filepath.Join(dir, "progs", pinSockops), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("older sockops program: %w", err)
	}
	defer prog.Close()
	if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(pin), err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: ebpf.AttachCGroupSockOps, Program: prog})
	if errors.Is(err, os.ErrNotExist) {
		return nil // the pod's cgroup went meanwhile
	}
	if err != nil {
		return fmt.Errorf("attach the older sockops program to %s: %w", cgroup, err)
	}
	defer l.Close() // the pin holds it; unpinned, it detaches with the process
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin %s: %w", pin, err)
	}
	return nil
}
