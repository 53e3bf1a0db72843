// Package starttime records when a process started running Go code. Its
// variable is set while packages initialise: Go initialises a package as
// soon as its imports are, in import-path order, so this one (importing only
// time) runs before the heavy initialisation of client-go's packages. The
// CNI plugin measures its ADD from here: the runtime sees that, plus the
// exec and the Go runtime's start.
package starttime

import "time"

// At is when this package was initialised.
var At = time.Now()
