#!/usr/bin/env python
# -*- coding: UTF-8 -*-

import socket,time

SIZE = 1024

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# 建立连接:
s.connect(('127.0.0.1', 9999))
# 接收欢迎消息:
print s.recv(SIZE)

s.send('hello server')
time.sleep(0.5)
print 'command test begins ...'
s.send('c')
s.send('weeding')
print 'command test ended'
time.sleep(0.5)

print 'image test begins ...'
s.send('f')
time.sleep(0.2)
with open('./image.bmp', 'rb') as f:
	for data in f:
		s.send(data)
print 'image test ended'

s.close()
print 'connection closed'
