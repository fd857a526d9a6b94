// Hostile input: calls with wrong arguments leave nothing behind and adopt or close nothing by
// accident. Serial: the tests count open descriptors.
import test from 'ava'

import { UnixSocket } from 'sendmsg'

import { openFds } from './helpers.ts'

test.serial('UnixSocket.connect() with wrong options refuses before it makes a descriptor', async (t) => {
  const before = openFds()
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', { allowHalfOpen: 1.5 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', { maxMessageSize: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(UnixSocket.connect('\0sendmsg-nobody', 5 as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.is(openFds(), before)
})
