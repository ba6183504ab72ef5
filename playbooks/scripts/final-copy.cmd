@echo off
rem ===========================================================================
rem The final night's copy: closes old-sbs's data shares, so that nobody
rem changes a file any more (open files are closed, connected users are
rem disconnected; the administrative share D$ stays for the copy), then
rem copies what changed since the first passes with copy-share.cmd.
rem One step for both, so that the shares never stay closed through a
rem working day: the window lets the step start only if the copy fits.
rem Exit code: the combined robocopy code (0-7 success), 16 if a share could
rem not be closed.
rem Runs in the ACME-Migration task: it manages old-sbs remotely (WMI).
rem "undo" (the step's rollback) shares the folders on old-sbs again, with
rem the default share permissions (the original definitions are saved in
rem C:\mig\inventory\shares.reg on old-sbs). It never deletes data.
rem ===========================================================================
setlocal
set SHARES=Company Users Scans
set ROOT=D:\Data
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
call C:\mig\bin\job.cmd final-copy "%~f0" in-task
exit /b %errorlevel%

:work
for %%S in (%SHARES%) do wmic /node:old-sbs share where "name='%%S'" call delete
set OPEN=0
for %%S in (%SHARES%) do (
    net view \\old-sbs | findstr /b /i /c:"%%S " >nul
    if not errorlevel 1 (
        echo Share %%S is still open on old-sbs. 1>&2
        set OPEN=1
    )
)
if not "%OPEN%"=="0" exit /b 16
echo %date% %time% old-sbs's data shares are closed: final copy
call C:\mig\bin\copy-share.cmd %SHARES%
exit /b %errorlevel%

:undo
rem wmic passes Win32_Share.Create's parameters in alphabetical order:
rem Access, Description, MaximumAllowed, Name, Password, Path, Type (0 = disk).
for %%S in (%SHARES%) do (
    net view \\old-sbs | findstr /b /i /c:"%%S " >nul
    if errorlevel 1 wmic /node:old-sbs share call create "","","","%%S","","%ROOT%\%%S",0
)
set MISSING=0
for %%S in (%SHARES%) do (
    net view \\old-sbs | findstr /b /i /c:"%%S " >nul
    if errorlevel 1 set MISSING=1
)
exit /b %MISSING%
